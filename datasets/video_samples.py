"""The embedded video default: clips panned across the photographs scikit-image ships.

Each clip is a window of ``size`` pixels that moves ``pan`` = (down, right)
whole pixels per frame across one of scikit-image's sample photographs, its
path centred in the photograph: real image content under a steady camera pan,
the motion P frames predict. Integer shifts need no resampling, so a clip is
the same bytes on every machine and needs no download or video decoder — what
the drift gate (``python -m bench check``) and a first ``dataset=video-samples``
run rely on, as ``dataset=samples`` is for images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import as_rgb8
from bench.io.video import Clip

DEFAULT_CLIPS = ("astronaut", "coffee", "chelsea", "rocket")


def _ints(value: Sequence[int], what: str, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of integers >= ``minimum``; a clear error naming the parameter otherwise."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"dataset 'video-samples': {what} must be two integers, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"dataset 'video-samples': {what} must be integers >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def pan_clip(image: np.ndarray, frames: int, size: tuple[int, int], pan: tuple[int, int]) -> np.ndarray:
    """``frames`` crops of ``size`` (height, width) from ``image``, each ``pan`` pixels on from the last.

    The path is centred in the image. Raises ``ValueError`` when the window and
    its travel do not fit.
    """
    height, width = size
    travel_y, travel_x = (frames - 1) * pan[0], (frames - 1) * pan[1]
    need_h, need_w = height + travel_y, width + travel_x
    if need_h > image.shape[0] or need_w > image.shape[1]:
        raise ValueError(
            f"a {height}x{width} window panning {pan[0]},{pan[1]} px/frame for {frames} frames needs "
            f"{need_h}x{need_w} pixels, the image has {image.shape[0]}x{image.shape[1]}"
        )
    top, left = (image.shape[0] - need_h) // 2, (image.shape[1] - need_w) // 2
    return np.stack(
        [
            image[top + t * pan[0] : top + t * pan[0] + height, left + t * pan[1] : left + t * pan[1] + width]
            for t in range(frames)
        ]
    )


class VideoSamples(ImageDataset):
    """Panned clips of named ``skimage.data`` photographs (see the module docstring); sample id = image name."""

    media = "video"  # the runner pairs it with video methods only

    def __init__(
        self,
        images: Sequence[str] = DEFAULT_CLIPS,
        name: str = "video-samples",
        frames: int = 16,
        size: Sequence[int] = (240, 320),
        pan: Sequence[int] = (2, 4),
        fps: float = 25.0,
    ):
        if isinstance(images, str) or not list(images):
            raise ValueError(f"dataset {name!r}: images must be a non-empty list of skimage.data names")
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise ValueError(f"dataset {name!r}: frames must be an integer >= 1, got {frames!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise ValueError(f"dataset {name!r}: fps must be a number > 0, got {fps!r}")
        self.name = name
        self.images = [str(i) for i in images]
        self.frames = int(frames)
        self.size = _ints(size, "size (height, width)", 1)
        self.pan = _ints(pan, "pan (down, right pixels per frame)", 0)
        self.fps = float(fps)

    def samples(self) -> list[Sample]:
        try:
            import skimage.data  # noqa: F401
        except ImportError as exc:
            raise DatasetUnavailable(f"dataset {self.name!r} needs scikit-image: pip install scikit-image") from exc
        how = f"{self.frames} frames {self.size[0]}x{self.size[1]}, pan {self.pan[0]},{self.pan[1]} px/frame"
        return [Sample(id=name, source=f"skimage.data.{name} ({how})") for name in self.images]

    def load(self, sample: Sample) -> Clip:
        import skimage.data

        loader = getattr(skimage.data, sample.id, None)
        if loader is None:
            raise DatasetUnavailable(f"dataset {self.name!r}: scikit-image has no sample image {sample.id!r}")
        image = as_rgb8(loader(), name=f"skimage.data.{sample.id}")
        try:
            frames = pan_clip(image, self.frames, self.size, self.pan)
        except ValueError as exc:
            raise ValueError(f"dataset {self.name!r}, skimage.data.{sample.id}: {exc}") from None
        return Clip(frames, fps=self.fps)

    def describe(self) -> str:
        return (
            f"{self.name} (scikit-image photographs panned {self.pan[0]},{self.pan[1]} px/frame: "
            f"{', '.join(self.images)}; {self.frames} frames {self.size[0]}x{self.size[1]} at {self.fps:g} fps)"
        )
