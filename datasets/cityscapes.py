"""Cityscapes (fine annotations) in its official folder layout, for semantic segmentation.

::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       (official)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png  (made by cityscapesScripts)

Evaluation is over the 19 train classes (trainIds 0..18) with 255 ignored,
as cityscapesScripts' ``evalPixelLevelSemanticLabeling`` does. The official
download ships ``labelIds`` only; ``labelTrainIds`` are what
``csCreateTrainIdLabelImgs`` writes. We map ``labelIds`` with the label table
below when they exist, so the official files suffice, and fall back to
``labelTrainIds``. The test split's labels are withheld (its gtFine files are
placeholders), so it has no ground truth here: the runner uses the fidelity
protocol on it.

Cityscapes needs a login and may not be redistributed, so there is no
automatic download: :func:`fetch_cityscapes` explains what to get.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import read_rgb8


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int  # 255 = ignored in evaluation
    category: str
    color: tuple[int, int, int]


#: cityscapesScripts ``helpers/labels.py``: the 34 labels that occur in labelIds images
#: (``license plate``, id -1, is not drawn in them and is left out).
LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", (119, 11, 32)),
)

NUM_CLASSES = 19
IGNORE_INDEX = 255
#: names of trainIds 0..18
TRAIN_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted((lab for lab in LABELS if lab.train_id != 255), key=lambda lab: lab.train_id)
)
#: the label space predictions and ground truth share (tasks check it against theirs)
LABEL_SPACE = "cityscapes"
#: how a target says its file holds labelIds that must go through :func:`label_id_to_train_id_lut`
LABELIDS_ENCODING = "cityscapes-labelIds"
TRAINIDS_ENCODING = "trainIds"

SPLITS = ("train", "val", "test")


def label_id_to_train_id_lut() -> np.ndarray:
    """A 256-entry uint8 table labelId -> trainId; ids outside the table map to 255 (ignored)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lab in LABELS:
        lut[lab.id] = lab.train_id
    return lut


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds image to trainIds (what ``csCreateTrainIdLabelImgs`` writes)."""
    return label_id_to_train_id_lut()[np.asarray(label_ids, dtype=np.uint8)]


def fetch_cityscapes(root: Path) -> Path:
    """Cityscapes cannot be downloaded automatically: raise a FetchError that says how to get it."""
    from bench.fetch import FetchError

    raise FetchError(
        "Cityscapes needs an account and may not be redistributed, so hmc-bench cannot download it. "
        "Register at https://www.cityscapes-dataset.com/register/ , then download the packages "
        "leftImg8bit_trainvaltest.zip (11 GB) and gtFine_trainvaltest.zip (241 MB) from "
        "https://www.cityscapes-dataset.com/downloads/ -- or with cityscapesScripts "
        "(`pip install cityscapesscripts`, then `csDownload leftImg8bit_trainvaltest.zip` and "
        "`csDownload gtFine_trainvaltest.zip`, which ask for your login). Unzip both into "
        f"{root} so that it holds leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/, then run with "
        f"dataset=cityscapes dataset.root={root} (labelIds are mapped to the 19 train classes here; "
        "csCreateTrainIdLabelImgs is not needed)."
    )


class Cityscapes(ImageDataset):
    """One split of Cityscapes with gtFine semantic labels.

    Sample ids are ``<split>/<city>/<city>_<seq>_<frame>`` (stable wherever
    the root lives). ``targets("segmentation", ...)`` returns per sample a
    small dict naming the label file and how to read it, not the array: the
    evaluator reads files one at a time.
    """

    label_kinds = ("segmentation",)
    label_space = LABEL_SPACE
    num_classes = NUM_CLASSES
    class_names = TRAIN_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        name: str = "cityscapes",
        cities: list[str] | tuple[str, ...] | None = None,
        limit: int | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"cityscapes: unknown split {split!r}; one of {SPLITS}")
        self.root = Path(root).expanduser()
        self.split = split
        self.name = name
        self.cities = list(cities) if cities else None
        self.limit = limit
        if split == "test":  # labels withheld: no ground truth, fidelity protocol only
            self.label_kinds = ()

    def _images_dir(self) -> Path:
        return self.root / "leftImg8bit" / self.split

    def samples(self) -> list[Sample]:
        images = self._images_dir()
        if not images.is_dir():
            raise DatasetUnavailable(
                f"dataset {self.name!r}: {images} does not exist. Cityscapes needs a login: run "
                f"`python -m bench fetch cityscapes --root {self.root}` for how to download it, or set "
                "dataset.root to a folder holding leftImg8bit/ and gtFine/"
            )
        files = sorted(images.glob("*/*_leftImg8bit.png"))
        if self.cities is not None:
            unknown = sorted(set(self.cities) - {p.parent.name for p in files})
            if unknown:
                raise DatasetUnavailable(f"dataset {self.name!r}: no city {unknown} under {images}")
            files = [p for p in files if p.parent.name in self.cities]
        if not files:
            raise DatasetUnavailable(f"dataset {self.name!r}: no <city>/*_leftImg8bit.png under {images}")
        if self.limit is not None:
            files = files[: self.limit]
        return [
            Sample(id=f"{self.split}/{p.parent.name}/{p.name[: -len('_leftImg8bit.png')]}", source=str(p))
            for p in files
        ]

    def load(self, sample: Sample) -> np.ndarray:
        return read_rgb8(sample.source)

    def content_digest(self, sample: Sample) -> str:
        """The frame's bytes and, where there is one, its label map's: both decide a row's evaluation."""
        from bench.running.keys import sample_content

        frame = sample_content(sample.source)
        try:
            labels = sample_content(self.label_target(sample)["path"])
        except DatasetUnavailable:
            return frame
        return f"{frame}+{labels}"

    def label_target(self, sample: Sample) -> dict[str, Any]:
        """Where ``sample``'s labels are and how to read them (labelIds preferred, else labelTrainIds)."""
        split, city, stem = sample.id.split("/")
        folder = self.root / "gtFine" / split / city
        label_ids = folder / f"{stem}_gtFine_labelIds.png"
        train_ids = folder / f"{stem}_gtFine_labelTrainIds.png"
        if label_ids.is_file():
            return {"path": str(label_ids), "encoding": LABELIDS_ENCODING, "label_space": LABEL_SPACE}
        if train_ids.is_file():
            return {"path": str(train_ids), "encoding": TRAINIDS_ENCODING, "label_space": LABEL_SPACE}
        raise DatasetUnavailable(
            f"dataset {self.name!r}: no ground truth for {sample.source}: neither {label_ids} nor "
            f"{train_ids.name} exists (unpack gtFine_trainvaltest.zip into {self.root})"
        )

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, Any]:
        if kind != "segmentation":
            raise KeyError(f"dataset {self.name!r} has no {kind} labels")
        if self.split == "test":
            raise KeyError(f"dataset {self.name!r}: Cityscapes test labels are withheld (use the fidelity protocol)")
        return {s.id: self.label_target(s) for s in samples}

    def train_ids(self, sample: Sample) -> np.ndarray:
        """``sample``'s ground truth as an H x W uint8 trainId map (255 = ignore)."""
        from bench.tasks.evaluators.segmentation import read_reference

        return read_reference(self.label_target(sample))

    def describe(self) -> str:
        return f"{self.name} ({self.split}, {self.root})"
