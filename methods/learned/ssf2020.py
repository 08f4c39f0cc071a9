"""CompressAI's learned video codec, scale-space flow (``ssf2020``, Agustsson et al., CVPR 2020), with real bytes.

Coding follows ``compressai.utils.video.eval_model`` (low delay, one GOP per
clip): each RGB frame becomes a float tensor in [0, 1], zero-padded (centred)
to a multiple of 128; the first frame is coded with ``encode_keyframe``, every
later one with ``encode_inter`` against the previous reconstruction, clamped
to [0, 1]. The decoder runs ``decode_keyframe`` / ``decode_inter`` on the
bytes alone, in the same order, crops the padding and rounds to 8 bits as the
image codecs do. (eval_model reads 4:2:0 YUV files and converts them to RGB
first; clips here are RGB already.)

The bitstream is a ``header`` stream (format version, quality, clip size and
frame count, latent shape, and the length of every entropy-coded string, as
unsigned LEB128 varints) and a ``frames`` stream holding the strings in
coding order: per frame ``y``, ``z`` (key frame) or motion ``y``, ``z``,
residual ``y``, ``z``. Both are counted in bpp; eval_model's file adds
4-byte lengths instead.

Weights: CompressAI's zoo (``ssf2020``, MSE, qualities 1-9, from the torch
hub cache ``$TORCH_HOME/hub/checkpoints``, ``python -m bench fetch ssf2020``
where there is internet) or local checkpoints (``checkpoints``), read with
``torch.load(weights_only=True)``. Offline with neither, the run stops with
one message naming the file and the URL.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.methods import container
from bench.methods.base import HUMAN, Bitstream, CodecError, MethodUnavailable
from bench.methods.learned.compressai import CompressAICodec, to_tensor, to_uint8

if TYPE_CHECKING:
    import torch

ARCH = "ssf2020"
QUALITIES = range(1, 10)
#: eval_model pads frames to a multiple of 2 ** (4 + 3)
MIN_DIV = 128
HEADER_VERSION = 1
STRINGS_PER_KEYFRAME = 2  # y, z
STRINGS_PER_INTER = 4  # motion y, z; residual y, z


def write_header(
    quality: int, frames: int, height: int, width: int, shape: Sequence[int], lengths: Sequence[int]
) -> bytes:
    """The header stream: version, then varints (quality, frames, height, width, latent h, w, string lengths)."""
    return container.write_header(HEADER_VERSION, (quality, frames, height, width, *shape, *lengths))


def read_header(data: bytes) -> tuple[int, int, int, int, tuple[int, int], list[int]]:
    """Inverse of :func:`write_header`; ValueError when it is malformed."""
    what = f"{ARCH} header"
    (quality, frames, height, width, zh, zw), _ = container.read_header(data, HEADER_VERSION, 6, what)
    if frames < 1:
        raise ValueError("header says the clip has no frames")
    count = STRINGS_PER_KEYFRAME + STRINGS_PER_INTER * (frames - 1)
    values, pos = container.read_header(data, HEADER_VERSION, 6 + count, what)
    lengths = values[6:]
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} stray bytes after the header")
    return quality, frames, height, width, (zh, zw), lengths


def _flatten(strings: Any) -> list[bytes]:
    """One frame's strings in coding order (key frame: [y, z]; inter: motion [y, z], residual [y, z])."""
    groups = [strings["motion"], strings["residual"]] if isinstance(strings, Mapping) else [strings]
    return [bytes(s[0]) for group in groups for s in group]


class SSF2020(CompressAICodec):
    """Scale-space flow video coding, rate = CompressAI quality 1-9 (MSE)."""

    uses_torch: ClassVar[bool] = True
    min_div: ClassVar[int] = MIN_DIV
    media: ClassVar[str] = "video"  # codes clips (T x H x W x 3), not images

    qualities: ClassVar[Mapping[str, range]] = {ARCH: QUALITIES}
    metrics: ClassVar[tuple[str, ...]] = ("mse",)  # CompressAI publishes ssf2020 weights for MSE only

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        metric: str = "mse",
        checkpoints: Mapping[Any, str | os.PathLike] | str | os.PathLike | None = None,
        checkpoint_pattern: str | None = None,
        entropy_coder: str = "ans",
        device: str = "cpu",
        description: str = "",
    ):
        super().__init__(
            name,
            rates,
            ARCH,
            metric,
            checkpoints,
            checkpoint_pattern,
            entropy_coder,
            device,
            description or f"CompressAI {ARCH} ({metric}), low delay",
        )

    # --- where the weights are (the rest is CompressAICodec's) ---------------------
    def zoo_url(self, quality: int) -> str:
        from compressai.zoo.video import model_urls

        return model_urls[ARCH][self.metric][quality]

    def _load_zoo(self, quality: int) -> torch.nn.Module:
        import torch.hub
        from compressai.zoo import video_models

        url, cached = self.zoo_url(quality), self.zoo_cache_file(quality)
        try:
            return video_models[ARCH](quality=quality, metric=self.metric, pretrained=True, progress=False)
        except urllib.error.URLError as exc:
            raise MethodUnavailable(
                f"{self._label(quality)}: CompressAI's pretrained weights are not in the torch hub cache "
                f"({torch.hub.get_dir()}, set by TORCH_HOME) and downloading them failed: {url}: "
                f"{getattr(exc, 'reason', exc)}. Put that file at {cached} (download it where there is internet), "
                "or set checkpoints: {quality: path} or a directory of the zoo's file names"
            ) from exc
        except Exception as exc:  # a corrupt cached file
            raise MethodUnavailable(
                f"{self._label(quality)}: cannot load {cached}: {type(exc).__name__}: {exc}"
            ) from exc

    def _architecture(self) -> type:
        from compressai.models.video import ScaleSpaceFlow

        return ScaleSpaceFlow

    # --- coding -----------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        q = self._quality(rate)
        clip = image
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
            raise CodecError(f"{self._label(q)}: expected a T x H x W x 3 uint8 clip, got {clip.shape} {clip.dtype}")
        frames, height, width = clip.shape[:3]
        net = self.network(q)
        pad, _ = compute_padding(height, width, min_div=self.min_div)
        strings: list[bytes] = []
        shapes = set()
        try:
            with torch.inference_mode():
                x_ref = None
                for index in range(frames):
                    x = F.pad(to_tensor(clip[index]).to(self.device), pad, mode="constant", value=0)
                    if x_ref is None:
                        x_ref, out = net.encode_keyframe(x)
                        shapes.add(tuple(out["shape"]))
                    else:
                        x_ref, out = net.encode_inter(x, x_ref)
                        shapes.update(tuple(s) for s in out["shape"].values())
                    x_ref = x_ref.clamp(0, 1)  # the next frame's reference, as eval_model (and the decoder) use it
                    strings += _flatten(out["strings"])
        except Exception as exc:
            raise CodecError(f"{self._label(q)}: encoding a {frames}x{height}x{width} clip failed: {exc}") from exc
        if len(shapes) != 1:
            raise CodecError(f"{self._label(q)}: latent shapes differ across frames: {sorted(shapes)}")
        header = write_header(q, frames, height, width, shapes.pop(), [len(s) for s in strings])
        payload = b"".join(strings)
        info = {"quality": q, "frames": frames, "header_bytes": len(header), "payload_bytes": len(payload)}
        return Bitstream({"header": header, "frames": payload}, height=height, width=width, info=info)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """The decoded clip; SBAR: every target receives it."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        try:
            q, frames, height, width, shape, lengths = read_header(bitstream.streams["header"])
        except (KeyError, ValueError) as exc:
            raise CodecError(f"{ARCH}: bad bitstream: {exc}") from exc
        payload = bitstream.streams.get("frames", b"")
        if sum(lengths) != len(payload) or (height, width) != (bitstream.height, bitstream.width):
            raise CodecError(
                f"{ARCH}: header says {sum(lengths)} payload bytes for {height}x{width}; the bitstream has "
                f"{len(payload)} bytes for {bitstream.height}x{bitstream.width}"
            )
        pieces, pos = [], 0
        for n in lengths:
            pieces.append(payload[pos : pos + n])
            pos += n
        net = self.network(self._quality(q))
        _, unpad = compute_padding(height, width, min_div=self.min_div)
        size = torch.Size(shape)
        out = []
        try:
            with torch.inference_mode():
                y, z = pieces[:STRINGS_PER_KEYFRAME]
                x_ref = net.decode_keyframe([[y], [z]], size).clamp(0, 1)
                out.append(to_uint8(F.pad(x_ref, unpad)))
                for k in range(frames - 1):
                    my, mz, ry, rz = pieces[STRINGS_PER_KEYFRAME + STRINGS_PER_INTER * k :][:STRINGS_PER_INTER]
                    strings = {"motion": [[my], [mz]], "residual": [[ry], [rz]]}
                    x_ref = net.decode_inter(x_ref, strings, {"motion": size, "residual": size}).clamp(0, 1)
                    out.append(to_uint8(F.pad(x_ref, unpad)))
        except Exception as exc:
            raise CodecError(f"{self._label(q)}: decoding failed: {exc}") from exc
        return np.stack(out)
