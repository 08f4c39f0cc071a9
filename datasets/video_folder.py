"""Any folder of videos: every video file under a root, each loaded as a sampled clip.

Clips are decoded with PyAV by the rules of :mod:`bench.io.video` (presentation
order, every frame of a variable-frame-rate clip, odd sizes kept) and sampled
by a :class:`~bench.io.video.FrameSampler`: by default the 16 frames at the centre
of each video, the clip length 3D-CNN action recognisers take. Without labels,
machine tasks use the fidelity protocol.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.video import VIDEO_EXTENSIONS, Clip, FrameSampler, read_clip


class VideoDataset(ImageDataset):
    """Samples that load as :class:`~bench.io.video.Clip` (``T x H x W x 3`` uint8 RGB) through one sampler."""

    media = "video"  # the runner pairs it with video methods only

    def __init__(
        self,
        frames: int | None = 16,
        stride: int = 1,
        start: str | int = "center",
        short: str = "repeat_last",
    ):
        self.sampler = FrameSampler(frames=frames, stride=stride, start=start, short=short)

    def load(self, sample: Sample) -> Clip:
        return read_clip(sample.source, self.sampler)


class VideoFolder(VideoDataset):
    """Every video file under ``root`` (recursively), sorted by relative path.

    Sample ids are paths relative to ``root``. Extensions:
    :data:`bench.io.video.VIDEO_EXTENSIONS`.
    """

    def __init__(
        self,
        root: str | Path,
        name: str | None = None,
        recursive: bool = True,
        limit: int | None = None,
        frames: int | None = 16,
        stride: int = 1,
        start: str | int = "center",
        short: str = "repeat_last",
    ):
        super().__init__(frames=frames, stride=stride, start=start, short=short)
        self.root = Path(root).expanduser()
        self.name = name or f"videos-{self.root.resolve().name}"
        self.recursive = recursive
        self.limit = limit

    def samples(self) -> list[Sample]:
        if not self.root.is_dir():
            raise DatasetUnavailable(
                f"dataset {self.name!r}: folder {self.root} does not exist (set dataset.root=<folder of videos>)"
            )
        pattern = "**/*" if self.recursive else "*"
        files = sorted(p for p in self.root.glob(pattern) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise DatasetUnavailable(
                f"dataset {self.name!r}: no videos ({', '.join(VIDEO_EXTENSIONS)}) under {self.root}"
            )
        if self.limit is not None:
            files = files[: self.limit]
        return [Sample(id=p.relative_to(self.root).as_posix(), source=str(p)) for p in files]

    def describe(self) -> str:
        return f"{self.name} ({self.root}; {self.sampler.describe()})"
