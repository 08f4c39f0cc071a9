"""Method adapters (installed as ``bench.methods``): codecs and the four families."""

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, HeadPrediction, Method, MethodUnavailable

__all__ = ["HUMAN", "Bitstream", "CodecError", "Family", "HeadPrediction", "Method", "MethodUnavailable"]
