"""Any folder of images, and Kodak (a folder with 24 known files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import IMAGE_EXTENSIONS, read_rgb8


class ImageFolder(ImageDataset):
    """Every image file under ``root`` (recursively), sorted by relative path.

    Sample ids are paths relative to ``root``, so results stay keyed the same
    wherever the folder lives.
    """

    def __init__(self, root: str | Path, name: str | None = None, recursive: bool = True, limit: int | None = None):
        self.root = Path(root).expanduser()
        # results are filed under the dataset's name: default to the folder's own
        self.name = name or f"folder-{self.root.resolve().name}"
        self.recursive = recursive
        self.limit = limit

    def _missing_message(self) -> str:
        return f"dataset {self.name!r}: folder {self.root} does not exist (set dataset.root=<folder of images>)"

    def samples(self) -> list[Sample]:
        if not self.root.is_dir():
            raise DatasetUnavailable(self._missing_message())
        pattern = "**/*" if self.recursive else "*"
        files = sorted(p for p in self.root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetUnavailable(
                f"dataset {self.name!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}"
            )
        if self.limit is not None:
            files = files[: self.limit]
        return [Sample(id=p.relative_to(self.root).as_posix(), source=str(p)) for p in files]

    def load(self, sample: Sample) -> np.ndarray:
        return read_rgb8(sample.source)

    def describe(self) -> str:
        return f"{self.name} ({self.root})"


KODAK_URL = "https://r0k.us/graphics/kodak/kodak/kodim{index:02d}.png"
KODAK_FILES = [f"kodim{i:02d}.png" for i in range(1, 25)]


class Kodak(ImageFolder):
    """The 24-image Kodak Lossless True Color suite in a flat folder.

    ``python -m bench fetch kodak --root DIR`` downloads it from its official
    page; a folder lacking any of the 24 files is reported by name.
    """

    def __init__(self, root: str | Path, name: str = "kodak", limit: int | None = None):
        super().__init__(root, name=name, recursive=False, limit=limit)

    def _missing_message(self) -> str:
        return (
            f"dataset 'kodak': folder {self.root} does not exist. "
            f"Get it with `python -m bench fetch kodak --root {self.root}` (from r0k.us), "
            "or point dataset.root at a folder holding kodim01.png ... kodim24.png"
        )

    def samples(self) -> list[Sample]:
        samples = super().samples()
        present = {s.id for s in samples}
        missing = [f for f in KODAK_FILES if f not in present]
        if missing and self.limit is None:
            raise DatasetUnavailable(
                f"dataset 'kodak': {self.root} lacks {len(missing)} of the 24 images ({', '.join(missing[:4])}"
                f"{', ...' if len(missing) > 4 else ''}); run `python -m bench fetch kodak --root {self.root}`"
            )
        return [s for s in samples if s.id in KODAK_FILES]
