"""TFLite models run with ai-edge-litert (or tflite-runtime): one image input, quantised in, dequantised out."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.io.digests import file_sha256
from bench.tasks.base import TaskUnavailable


def interpreter_class() -> Any:
    """The TFLite interpreter class from ai-edge-litert, else tflite-runtime, else TensorFlow."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    try:
        import tensorflow as tf  # noqa: F401

        return tf.lite.Interpreter
    except ImportError:
        return None


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "none"


TFLITE_HINT = "pip install ai-edge-litert"


#: where the Coral test models the configs name can be downloaded (CPU builds, not the *_edgetpu ones)
CORAL_TEST_DATA = "https://github.com/google-coral/test_data/raw/master/"


class TFLiteModel:
    """One TFLite model with one image input: quantises the input, dequantises outputs.

    The network's real-valued input is ``(pixel - input_mean) / input_std``;
    for a quantised input tensor it is stored as ``round(real / scale + zero_point)``
    with the model's own scale and zero point. The TF-slim / DeepLab uint8
    models here declare scale 1/128, zero point 128, so the defaults
    (mean 128, std 128) feed them the raw pixels exactly, as the reference
    implementations (Coral's demos) do.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path).expanduser()
        self.threads = threads
        self._interpreter = None

    def unavailable_reason(self, get_hint: str = "") -> str | None:
        if interpreter_class() is None:
            return f"no TFLite interpreter is installed ({TFLITE_HINT})"
        if not self.path.is_file():
            return f"TFLite model not found: {self.path}" + (f" ({get_hint})" if get_hint else "")
        return None

    @property
    def interpreter(self) -> Any:
        if self._interpreter is None:
            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(why)
            interpreter = interpreter_class()(model_path=str(self.path), num_threads=self.threads)
            interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
                shapes = [list(d["shape"]) for d in inputs]
                raise TaskUnavailable(f"{self.path}: expected one NHWC RGB image input, got inputs {shapes}")
            self._interpreter = interpreter
        return self._interpreter

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_interpreter"] = None  # not picklable: rebuilt in each worker process
        return state

    @property
    def input_details(self) -> dict[str, Any]:
        return self.interpreter.get_input_details()[0]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model takes."""
        shape = self.input_details["shape"]
        return int(shape[1]), int(shape[2])

    def quantize(self, pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
        """H x W x 3 pixel values (uint8 or float, 0..255) -> the input tensor's dtype."""
        d = self.input_details
        dtype = np.dtype(d["dtype"])
        scale, zero_point = d["quantization"]
        if dtype.kind == "f":
            return ((pixels.astype(np.float32) - mean) / std).astype(dtype)
        if not scale:
            raise TaskUnavailable(f"{self.path}: integer input without quantisation parameters")
        if dtype == np.uint8 and pixels.dtype == np.uint8 and zero_point == mean and scale * std == 1.0:
            return pixels  # exactly the raw pixels (the common case): skip the float round trip
        real = (pixels.astype(np.float64) - mean) / std
        info = np.iinfo(dtype)
        return np.clip(np.rint(real / scale + zero_point), info.min, info.max).astype(dtype)

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One forward pass of a 1 x H x W x 3 input; outputs dequantised when quantised and not integer ids."""
        it = self.interpreter
        it.set_tensor(self.input_details["index"], tensor[None] if tensor.ndim == 3 else tensor)
        it.invoke()
        outs = []
        for d in it.get_output_details():
            out = it.get_tensor(d["index"])
            scale, zero_point = d["quantization"]
            if scale and np.dtype(d["dtype"]).kind in "iu":
                out = (out.astype(np.float32) - zero_point) * scale
            outs.append(out)
        return outs

    def sha256(self) -> str:
        return file_sha256(self.path)
