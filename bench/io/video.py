"""Reading videos into the one form every video codec and metric takes: a :class:`Clip`.

A clip is a ``T x H x W x 3`` uint8 RGB array that also knows the frame rate it
plays at (``fps``, for kbps). The rules, documented here and in the README:

- **Decoding** is FFmpeg's, through PyAV. Frames are taken in the order the
  decoder outputs them, which is presentation order (FFmpeg reorders B-frames);
  container timestamps are not used to reorder, drop or duplicate frames: AVI
  stores decode times only, and a variable-frame-rate clip keeps every frame.
  ``fps`` is the stream's average rate (FFmpeg: frames / duration), divided by
  the sampler's stride.
- **Colour**: source frames become RGB with swscale, using the colour matrix and
  range the stream is tagged with (untagged: BT.601, limited range).
- **Frame sampling** (:class:`FrameSampler`): which decoded frames form the
  coded clip: ``frames`` frames (all when None), every ``stride``-th, starting
  at the clip's ``begin`` or centred in it. A video shorter than that is
  padded by repeating its last frame (``short="repeat_last"``, the default) or
  is an error (``short="error"``).
- **Errors**: a file FFmpeg cannot open, without a video stream, with zero
  decodable frames, or corrupt mid-stream raises :class:`VideoError` naming it;
  the runner then fails that sample only.
- **Odd sizes** are kept here; codecs that need even sizes for 4:2:0 pad by
  edge replication and crop back (:func:`pad_to_even`).

The 4:2:0 conversion the video codecs and ``psnr-yuv420`` share
(:func:`rgb_to_yuv420`, :func:`yuv420_to_rgb`) is swscale's, BT.601 limited
range, chroma by 2x2 area averaging (accurate rounding), back to RGB with
bilinear chroma upsampling.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m")


class VideoError(ValueError):
    """A video that cannot be read or sampled; the message names the file."""


class Clip(np.ndarray):
    """``T x H x W x 3`` uint8 RGB frames with the frame rate they play at (``fps``; None if unknown)."""

    fps: float | None

    def __new__(cls, frames: Any, fps: float | None = None) -> Clip:
        obj = np.asarray(frames).view(cls)
        if obj.ndim != 4 or obj.shape[-1] != 3 or obj.dtype != np.uint8:
            raise ValueError(f"a clip is T x H x W x 3 uint8, got {obj.shape} {obj.dtype}")
        obj.fps = float(fps) if fps else None
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.fps = getattr(obj, "fps", None)

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False) -> Any:
        """Arithmetic and reductions give plain arrays and scalars: only the frames themselves are a clip."""
        out = np.asarray(array)
        return out[()] if return_scalar or out.ndim == 0 else out

    def __reduce__(self) -> tuple[Any, ...]:  # keep fps across processes
        return Clip, (np.asarray(self), self.fps)


def frame_rate(clip: np.ndarray) -> float | None:
    """The clip's frames per second, or None when it does not say."""
    return getattr(clip, "fps", None)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise VideoError("PyAV is not installed (pip install av)") from exc
    return av


# --- 4:2:0 conversions -----------------------------------------------------------------------------


def _reformat_flags(name: str) -> Any:
    from av.video.reformatter import Interpolation

    return Interpolation[name] | Interpolation.ACCURATE_RND


def rgb_to_yuv420(rgb: np.ndarray) -> Any:
    """One ``H x W x 3`` uint8 RGB frame as a PyAV ``yuv420p`` frame (BT.601, limited range, 2x2 area chroma)."""
    av = _av()
    from av.video.reformatter import ColorRange, Colorspace

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU601,
        dst_color_range=ColorRange.MPEG,
        interpolation=_reformat_flags("AREA"),
        threads=1,
    )


def yuv420_to_rgb(frame: Any) -> np.ndarray:
    """A ``yuv420p`` frame coded as :func:`rgb_to_yuv420` made it, back to ``H x W x 3`` uint8 RGB."""
    from av.video.reformatter import ColorRange, Colorspace

    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=Colorspace.ITU601,
        src_color_range=ColorRange.MPEG,
        interpolation=_reformat_flags("BILINEAR"),
        threads=1,
    )
    return rgb.to_ndarray()


def yuv420_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (H x W), U and V (ceil(H/2) x ceil(W/2)) uint8 planes of an RGB frame, by :func:`rgb_to_yuv420`."""
    frame = rgb_to_yuv420(rgb)
    planes = []
    for plane in frame.planes:
        data = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        planes.append(np.ascontiguousarray(data[:, : plane.width]))
    return planes[0], planes[1], planes[2]


def pad_to_even(clip: np.ndarray) -> np.ndarray:
    """The clip with its height and width made even by repeating the last row / column (4:2:0 needs it)."""
    h, w = clip.shape[-3:-1]
    if h % 2 == 0 and w % 2 == 0:
        return clip
    return np.pad(np.asarray(clip), ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# --- frame sampling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameSampler:
    """Which decoded frames form the clip (see the module docstring).

    ``frames``: how many (None: every frame); ``stride``: take every
    ``stride``-th frame; ``start``: ``"center"`` (the window centred in the
    video), ``"begin"``, or a frame index; ``short``: ``"repeat_last"`` or
    ``"error"`` for videos with fewer frames than the window needs.
    """

    frames: int | None = None
    stride: int = 1
    start: str | int = "center"
    short: str = "repeat_last"

    def __post_init__(self) -> None:
        if self.frames is not None and int(self.frames) < 1:
            raise ValueError(f"frames must be at least 1 (or null for all), got {self.frames}")
        if int(self.stride) < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if not (self.start in ("center", "begin") or (isinstance(self.start, int) and self.start >= 0)):
            raise ValueError(f"start must be 'center', 'begin' or a frame index >= 0, got {self.start!r}")
        if self.short not in ("repeat_last", "error"):
            raise ValueError(f"short must be 'repeat_last' or 'error', got {self.short!r}")

    def indices(self, available: int, name: str = "video") -> list[int]:
        """Indices of the decoded frames that form the clip, for a video of ``available`` frames."""
        if available < 1:
            raise VideoError(f"{name}: no video frames could be decoded")
        if self.frames is None:
            return list(range(0, available, self.stride))
        span = (self.frames - 1) * self.stride + 1  # decoded frames the window covers
        if self.start == "begin":
            first = 0
        elif self.start == "center":
            first = max(0, (available - span) // 2)
        else:
            first = int(self.start)
            if first >= available:
                raise VideoError(f"{name}: start frame {first} is past its {available} frames")
        picked = list(range(first, min(available, first + span), self.stride))
        if len(picked) < self.frames:
            if self.short == "error":
                raise VideoError(
                    f"{name}: has {available} frames; the sampler needs {span} from frame {first} "
                    f"({self.frames} frames, stride {self.stride})"
                )
            picked += [picked[-1]] * (self.frames - len(picked))
        return picked

    def describe(self) -> str:
        count = "all frames" if self.frames is None else f"{self.frames} frames ({self.start})"
        return f"{count}, stride {self.stride}" + ("" if self.short == "repeat_last" else ", short clips fail")


def _open(path: Path) -> Any:
    av = _av()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size == 0:
        raise VideoError(f"{path}: empty file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a video FFmpeg can read ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


@contextlib.contextmanager
def _video_stream(path: Path) -> Iterator[tuple[Any, Any]]:
    """The open container and its first video stream; FFmpeg errors while decoding become :class:`VideoError`."""
    av = _av()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threads delay output and gain nothing in a worker
        yield container, stream
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: corrupt video ({exc})") from exc
    finally:
        container.close()


def _to_rgb(frame: Any) -> np.ndarray:
    """A decoded source frame as RGB, by the colour matrix and range it is tagged with."""
    rgb = frame.reformat(
        format="rgb24",
        src_color_range=frame.color_range or None,
        interpolation=_reformat_flags("BILINEAR"),
        threads=1,
    )
    return rgb.to_ndarray()


def count_frames(path: str | os.PathLike) -> int:
    """How many frames the video decodes to (decoding it: container counts are not always right)."""
    with _video_stream(Path(path)) as (container, stream):
        return sum(1 for _ in container.decode(stream))


def read_clip(path: str | os.PathLike, sampler: FrameSampler | None = None) -> Clip:
    """The video at ``path`` as a :class:`Clip`, sampled by ``sampler`` (default: every frame)."""
    path = Path(path)
    sampler = sampler or FrameSampler()
    if sampler.frames is None or sampler.start == "center" or sampler.short == "error":
        wanted: list[int] | None = sampler.indices(count_frames(path), str(path))
        first, last = min(wanted), max(wanted)
    else:  # a window from a fixed start: decode only up to its end, without counting first
        wanted = None
        first = 0 if sampler.start == "begin" else int(sampler.start)
        last = first + (sampler.frames - 1) * sampler.stride
    keep = None if wanted is None else set(wanted)
    rgb: dict[int, np.ndarray] = {}
    decoded = 0
    with _video_stream(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        for index, frame in enumerate(container.decode(stream)):
            decoded = index + 1
            if first <= index and (keep is None or index in keep):
                rgb[index] = _to_rgb(frame)
            if index >= last:
                break
    if wanted is None:
        wanted = sampler.indices(decoded, str(path))
    try:
        stack = np.stack([rgb[i] for i in wanted])
    except KeyError as exc:
        raise VideoError(f"{path}: frame {exc} was counted but could not be decoded again (a corrupt file?)") from None
    fps = float(rate) / sampler.stride if rate else None
    return Clip(stack, fps)
