"""An ImageNet-style classification folder: images plus their class indices.

Two layouts:

- a label file (``labels``): one image per line, ``filename<sep>label`` with
  ``,`` (CSV), a tab (TSV) or whitespace (Caffe's ``val.txt``) as separator,
  an optional header line (``filename,label``). ``filename`` is relative to
  ``root``. ``label`` is a class index, or a class name / WordNet id looked up
  in the ``classes`` list;
- class folders (no ``labels``): ``<root>/<class_dir>/<image>``; the class of
  ``<class_dir>`` is its line in ``classes``. Without a ``classes`` file the
  folders sorted by name are the classes (torchvision's ``ImageFolder`` rule,
  which gives torchvision's ImageNet order for the 1000 WordNet-id folders),
  and then all ``num_classes`` must be present, or the indices would shift.

Indices must match the network's outputs (torchvision's ImageNet-1k order for
the tasks in :mod:`bench.tasks.classification`): a class list of another
length than ``num_classes``, an index out of range or an unknown class name
is an error that names the file and line, never a silently wrong label.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import IMAGE_EXTENSIONS, read_rgb8

_ID_THEN_NAME = re.compile(r"^(n\d{8}|\d+)[\s,]+(\S.*)$")
HEADER_NAMES = {"filename", "file", "image", "path", "image_id", "imageid", "name"}


class LabelFileError(DatasetUnavailable, ValueError):
    """A class list or label file that does not fit; the message names the file and line."""


class ClassList(dict):
    """Class key -> index; keys that name two classes (ImageNet has two "crane"s) are refused when looked up."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.ambiguous: dict[str, list[int]] = {}

    def index(self, key: str, where: str) -> int:
        if key in self.ambiguous:
            lines = " and ".join(str(i + 1) for i in self.ambiguous[key])
            raise LabelFileError(
                f"{where}: class {key!r} is ambiguous (lines {lines} of {self.path}): use its index or WordNet id"
            )
        if key not in self:
            raise LabelFileError(f"{where}: unknown class {key!r} (not in {self.path.name})")
        return self[key]


def read_class_list(path: str | os.PathLike, num_classes: int | None = None) -> ClassList:
    """Class key -> index from a list with one class per line (index = line number, blank lines skipped).

    A line may be ``n01440764``, ``n01440764 tench`` or ``tench, Tinca tinca``;
    the whole line, its first synonym, and for a line that starts with a
    WordNet id (or a number) the id and the name after it name the class.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"class list not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    lines = [line for line in lines if line]
    if num_classes is not None and len(lines) != num_classes:
        raise LabelFileError(
            f"{path}: lists {len(lines)} classes but the network has num_classes={num_classes} "
            "(a class list for another model?)"
        )
    classes = ClassList(path)
    for index, line in enumerate(lines):
        keys = [line, line.split(",")[0].strip()]  # "tench, Tinca tinca": also its first synonym
        m = _ID_THEN_NAME.match(line)
        if m:  # "n01440764 tench, Tinca tinca" / "n01440764,tench": the id, the name and its first synonym
            keys += [m.group(1), m.group(2).strip(), m.group(2).split(",")[0].strip()]
        for key in dict.fromkeys(keys):
            if key in classes.ambiguous:
                classes.ambiguous[key].append(index)
            elif key in classes and classes[key] != index:
                classes.ambiguous[key] = [classes.pop(key), index]
            else:
                classes[key] = index
    return classes


def _split_line(line: str, path: Path, lineno: int) -> list[str]:
    if "\t" in line:
        fields = line.split("\t")
    elif "," in line:
        fields = next(csv.reader([line]))
    else:
        fields = line.rsplit(None, 1)
    fields = [f.strip() for f in fields]
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise LabelFileError(f"{path}:{lineno}: expected 'filename,label', got {line!r}")
    return fields[:2]


def read_label_file(path: str | os.PathLike, num_classes: int, classes: dict[str, int] | None = None) -> dict[str, int]:
    """Relative filename -> class index from a CSV / TSV / whitespace label file."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"label file not found: {path}")
    labels: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, label = _split_line(line, path, lineno)
        if not labels and name.lower() in HEADER_NAMES:
            continue  # header
        try:
            index = int(label)
        except ValueError:
            if classes is None:
                raise LabelFileError(
                    f"{path}:{lineno}: label {label!r} is not a class index (give a classes file to use names)"
                ) from None
            index = classes.index(label, f"{path}:{lineno}")
        if not 0 <= index < num_classes:
            raise LabelFileError(f"{path}:{lineno}: class index {index} is outside 0..{num_classes - 1}")
        key = Path(name).as_posix()
        if key in labels:
            raise LabelFileError(f"{path}:{lineno}: {name} is labelled twice")
        labels[key] = index
    if not labels:
        raise LabelFileError(f"{path}: no labelled images")
    return labels


class ImageNetFolder(ImageDataset):
    """Labelled images for classification (see the module docstring for the layouts).

    Sample ids are image paths relative to ``root``; ``targets("classification")``
    gives each its class index.
    """

    label_kinds = ("classification",)

    def __init__(
        self,
        root: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        classes: str | os.PathLike | None = None,
        num_classes: int = 1000,
        name: str | None = None,
        limit: int | None = None,
    ):
        self.root = Path(root).expanduser()
        self.labels_path = self._resolve(labels)
        self.classes_path = self._resolve(classes)
        self.num_classes = int(num_classes)
        self.name = name or f"imagenet-{self.root.resolve().name}"
        self.limit = limit
        self._labels: dict[str, int] | None = None

    def _resolve(self, path: str | os.PathLike | None) -> Path | None:
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return p if p.exists() and not (self.root / p).exists() else self.root / p  # root-relative first

    def _class_dirs_labels(self) -> dict[str, int]:
        dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DatasetUnavailable(
                f"dataset {self.name!r}: no label file given and no class folders under {self.root} "
                "(set dataset.labels=<filename,label file> or use <root>/<class>/<image>)"
            )
        if self.classes_path is not None:
            classes = read_class_list(self.classes_path, self.num_classes)
            unknown = [d.name for d in dirs if d.name not in classes]
            if unknown:
                raise LabelFileError(
                    f"dataset {self.name!r}: class folder(s) {unknown[:5]} under {self.root} are not in "
                    f"{self.classes_path}"
                )
            classes = {d.name: classes.index(d.name, f"class folder {d}") for d in dirs}
        else:
            if len(dirs) != self.num_classes:
                raise LabelFileError(
                    f"dataset {self.name!r}: {len(dirs)} class folders under {self.root} but the network has "
                    f"num_classes={self.num_classes}; sorted folder order gives the right indices only when all "
                    "classes are present: give a classes file (one class folder name per line, in the "
                    "network's order)"
                )
            classes = {d.name: i for i, d in enumerate(dirs)}
        labels = {}
        for d in dirs:
            for f in sorted(d.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    labels[f.relative_to(self.root).as_posix()] = classes[d.name]
        return labels

    def labels(self) -> dict[str, int]:
        """Relative image path -> class index, checked (cached)."""
        if self._labels is None:
            if not self.root.is_dir():
                raise DatasetUnavailable(f"dataset {self.name!r}: folder {self.root} does not exist (set dataset.root)")
            if self.labels_path is not None:
                classes = read_class_list(self.classes_path, self.num_classes) if self.classes_path else None
                labels = read_label_file(self.labels_path, self.num_classes, classes)
                missing = [name for name in labels if not (self.root / name).is_file()]
                if missing:
                    raise DatasetUnavailable(
                        f"dataset {self.name!r}: {len(missing)} image(s) of {self.labels_path} are not under "
                        f"{self.root}, e.g. {missing[0]}"
                    )
            else:
                labels = self._class_dirs_labels()
            if not labels:
                raise DatasetUnavailable(f"dataset {self.name!r}: no images under {self.root}")
            self._labels = dict(sorted(labels.items()))
        return self._labels

    def samples(self) -> list[Sample]:
        names = list(self.labels())
        if self.limit is not None:
            names = names[: self.limit]
        return [Sample(id=n, source=str(self.root / n)) for n in names]

    def load(self, sample: Sample) -> np.ndarray:
        return read_rgb8(sample.source)

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, int]:
        if kind != "classification":
            raise KeyError(f"dataset {self.name!r} has no {kind} labels")
        labels = self.labels()
        return {s.id: labels[s.id] for s in samples}

    def label_files(self) -> list[Path]:
        return [Path(p) for p in (self.labels_path, self.classes_path) if p is not None and Path(p).is_file()]

    def describe(self) -> str:
        how = self.labels_path.name if self.labels_path else "class folders"
        return f"{self.name} ({self.root}, {how})"
