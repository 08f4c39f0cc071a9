"""COCO 2017 in its official layout, with detection and instance-segmentation ground truth.

``root/val2017/*.jpg`` and ``root/annotations/instances_val2017.json`` (both
configurable) are read through pycocotools' ``COCO``, after a validation pass:
pycocotools itself accepts files that later give a silently wrong mAP (an
annotation whose category is not in ``categories`` is never evaluated, an
image missing on disk fails only at load time, a box with NaN matches nothing).
Every such problem raises :class:`CocoFormatError` naming the file and the
entry, except images missing on disk, which can instead be skipped and counted
(``missing_images="skip"``; then listed by :meth:`CocoDetection.problems`).

Targets are small and picklable: per sample the annotation file, the image
id and size. The evaluator (:mod:`bench.tasks.evaluators.coco`) loads the file once
per process through :func:`load_annotations`, which caches it.

``python -m bench fetch coco`` (:func:`fetch_coco`) downloads the official
val2017 images and the 2017 train/val annotations from images.cocodataset.org,
checks their size and MD5, and unpacks only what the benchmark reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import ImageError, read_rgb8

if TYPE_CHECKING:
    from pycocotools.coco import COCO

#: the 80 COCO object categories: (COCO category id, name), ascending id. The
#: usual 80-class detector output index i is the i-th entry.
COCO80: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
    (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
    (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"),
    (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"),
    (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"),
    (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip

DETECTION = "detection"
INSTANCE_SEGMENTATION = "instance_segmentation"
LABEL_SPACE = "coco"


class CocoFormatError(DatasetUnavailable, ValueError):
    """An annotation file that would give a wrong mAP; the message names the file and the entry.

    A ``DatasetUnavailable`` too, so the CLI reports it as one message, not a traceback.
    """


# --- loading and validating an instances JSON ------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry(kind: str, index: int, item: Any) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    return f"{kind}[{index}]" + (f" (id {ident})" if ident is not None else "")


def _check_segmentation(seg: Any) -> str | None:
    """What is wrong with a COCO ``segmentation`` (polygons or RLE), or None."""
    if isinstance(seg, list):
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(map(_is_number, poly)):
                return "segmentation polygons must be lists of at least 3 finite x, y pairs"
        return None
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v >= 0 for v in size)):
            return "RLE segmentation needs 'size': [height, width]"
        if not isinstance(seg.get("counts"), (list, str)):
            return "RLE segmentation needs 'counts' (a list or a compressed string)"
        return None
    return f"segmentation must be polygons (list) or RLE (dict), not {type(seg).__name__}"


def validate_instances(data: Any, path: str | os.PathLike) -> list[str]:
    """Every problem of a COCO instances document that would make its mAP wrong (empty when valid)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{path}: the top level must be a JSON object, not {type(data).__name__}"]
    for key in ("images", "annotations", "categories"):
        if key not in data:
            problems.append(f"{path}: missing top-level key {key!r} (not a COCO instances file?)")
        elif not isinstance(data[key], list):
            problems.append(f"{path}: {key!r} must be a list, not {type(data[key]).__name__}")
    if problems:
        return problems

    categories: set[int] = set()
    for i, cat in enumerate(data["categories"]):
        where = f"{path}: {_entry('categories', i, cat)}"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            problems.append(f"{where}: needs an integer 'id' and a string 'name'")
        elif cat["id"] in categories:
            problems.append(f"{where}: duplicate category id {cat['id']}")
        else:
            categories.add(cat["id"])

    images: set[int] = set()
    names: set[str] = set()
    for i, img in enumerate(data["images"]):
        where = f"{path}: {_entry('images', i, img)}"
        if not isinstance(img, dict):
            problems.append(f"{where}: must be an object")
            continue
        missing = [k for k in ("id", "file_name", "width", "height") if k not in img]
        if missing:
            problems.append(f"{where}: missing {', '.join(repr(k) for k in missing)}")
            continue
        if not _is_int(img["id"]):
            problems.append(f"{where}: 'id' must be an integer, not {img['id']!r}")
        elif img["id"] in images:
            problems.append(f"{where}: duplicate image id {img['id']}")
        else:
            images.add(img["id"])
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            problems.append(f"{where}: 'file_name' must be a non-empty string")
        elif img["file_name"] in names:
            problems.append(f"{where}: duplicate file_name {img['file_name']!r}")
        else:
            names.add(img["file_name"])
        if not (_is_int(img["width"]) and _is_int(img["height"]) and img["width"] > 0 and img["height"] > 0):
            problems.append(f"{where}: 'width' and 'height' must be positive integers")

    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: {_entry('annotations', i, ann)}"
        if not isinstance(ann, dict):
            problems.append(f"{where}: must be an object")
            continue
        missing = [k for k in ("id", "image_id", "category_id", "bbox", "area") if k not in ann]
        if missing:
            problems.append(f"{where}: missing {', '.join(repr(k) for k in missing)}")
            continue
        if not _is_int(ann["id"]):
            problems.append(f"{where}: 'id' must be an integer")
        elif ann["id"] in ann_ids:
            problems.append(f"{where}: duplicate annotation id {ann['id']}")
        else:
            ann_ids.add(ann["id"])
        if ann["image_id"] not in images:
            problems.append(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in categories:
            known = f"{min(categories)}..{max(categories)}" if categories else "none"
            problems.append(
                f"{where}: category_id {ann['category_id']!r} is not in 'categories' (known ids: {known}); "
                "pycocotools would silently never evaluate it"
            )
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            problems.append(f"{where}: 'bbox' must be [x, y, width, height] of finite numbers, not {bbox!r}")
        elif bbox[2] < 0 or bbox[3] < 0:
            problems.append(f"{where}: 'bbox' has a negative width or height: {bbox!r}")
        if not _is_number(ann["area"]) or ann["area"] < 0:
            problems.append(f"{where}: 'area' must be a finite number >= 0, not {ann['area']!r}")
        if ann.get("iscrowd", 0) not in (0, 1):
            problems.append(f"{where}: 'iscrowd' must be 0 or 1, not {ann['iscrowd']!r}")
        if "segmentation" in ann and (why := _check_segmentation(ann["segmentation"])):
            problems.append(f"{where}: {why}")
    return problems


def _raise_problems(problems: list[str]) -> None:
    if problems:
        shown = "\n  ".join(problems[:5])
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise CocoFormatError(f"{len(problems)} problem(s) in a COCO annotation file:\n  {shown}{more}")


def read_instances(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a COCO instances JSON; :class:`CocoFormatError` names what is wrong."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CocoFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CocoFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise CocoFormatError(f"{path}: not UTF-8 JSON ({exc.reason} at byte {exc.start})") from exc
    _raise_problems(validate_instances(data, path))
    return data


def coco_from_dict(data: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` over an in-memory instances document (its index printing silenced)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


_CACHE: dict[tuple[str, int, int], COCO] = {}


def load_annotations(path: str | os.PathLike) -> COCO:
    """The validated ``COCO`` of ``path``, loaded once per process (re-read when the file changes)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        coco = coco_from_dict(read_instances(path))
        # COCO objects are large: keep this file and at most one other, never a stale version
        for old in [k for k in _CACHE if k[0] == key[0]]:
            del _CACHE[old]
        while len(_CACHE) > 1:
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = coco
    return _CACHE[key]


# --- the dataset ------------------------------------------------------------------------------------


class CocoDetection(ImageDataset):
    """COCO images with instances ground truth; samples sorted by image id, sample id = ``file_name``.

    ``images`` and ``annotations`` are relative to ``root`` unless absolute.
    ``missing_images``: ``"error"`` (default) stops on the first image named in
    the JSON but absent on disk; ``"skip"`` leaves such images out of the
    samples (so out of the mAP) and lists them in :meth:`problems`.
    """

    label_kinds = (DETECTION, INSTANCE_SEGMENTATION)
    #: category ids are COCO's: ground truth for tasks whose ``label_space`` is "coco"
    label_space = LABEL_SPACE

    def __init__(
        self,
        root: str | os.PathLike,
        name: str = "coco",
        images: str = "val2017",
        annotations: str = "annotations/instances_val2017.json",
        missing_images: str = "error",
        limit: int | None = None,
    ):
        if missing_images not in ("error", "skip"):
            raise ValueError(f"dataset {name!r}: missing_images must be 'error' or 'skip', not {missing_images!r}")
        self.name = name
        self.root = Path(root).expanduser()
        self.image_dir = self.root / Path(images).expanduser()
        self.annotation_file = self.root / Path(annotations).expanduser()
        self.missing_images = missing_images
        self.limit = limit
        self._samples: list[Sample] | None = None
        self._problems: list[str] = []
        self._by_name: tuple[COCO, dict[str, dict[str, Any]]] | None = None
        #: file_name -> (image id, width, height): what ``load`` checks, small enough to travel to workers
        self._sizes: dict[str, tuple[int, int, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_by_name"] = None  # the COCO object stays in this process; others load it when they need it
        return state

    def _fetch_hint(self) -> str:
        return (
            f"get COCO 2017 val with `python -m bench fetch coco --root {self.root}` (from images.cocodataset.org), "
            "or set dataset.root / dataset.images / dataset.annotations to an existing copy"
        )

    def label_files(self) -> list[Path]:
        return [self.annotation_file] if self.annotation_file.is_file() else []

    def coco(self) -> COCO:
        """The validated ground truth (pycocotools ``COCO``)."""
        if not self.annotation_file.is_file():
            folder = self.annotation_file.parent
            others = sorted(p.name for p in folder.glob("instances_*.json")) if folder.is_dir() else []
            beside = (
                f"; {folder} holds {', '.join(others)}: e.g. "
                f"dataset.annotations={(folder / others[0]).relative_to(self.root).as_posix()}"
                if others and folder.is_relative_to(self.root)
                else ""
            )
            raise DatasetUnavailable(
                f"dataset {self.name!r}: annotation file {self.annotation_file} not found{beside}; {self._fetch_hint()}"
            )
        return load_annotations(self.annotation_file)

    def samples(self) -> list[Sample]:
        if self._samples is None:
            if not self.image_dir.is_dir():
                raise DatasetUnavailable(
                    f"dataset {self.name!r}: image folder {self.image_dir} not found; {self._fetch_hint()}"
                )
            coco = self.coco()
            samples, problems = [], []
            for image_id in sorted(coco.imgs):
                entry = coco.imgs[image_id]
                path = self.image_dir / entry["file_name"]
                if not path.is_file():
                    msg = (
                        f"{self.annotation_file}: image id {image_id} names {entry['file_name']!r}, "
                        f"not in {self.image_dir}"
                    )
                    if self.missing_images == "error":
                        raise DatasetUnavailable(
                            f"dataset {self.name!r}: {msg} (set dataset.missing_images=skip to leave such "
                            "images out of the evaluation)"
                        )
                    problems.append(msg)
                    continue
                samples.append(Sample(id=entry["file_name"], source=str(path)))
                self._sizes[entry["file_name"]] = (image_id, entry["width"], entry["height"])
            if not samples:
                raise DatasetUnavailable(f"dataset {self.name!r}: none of the images of {self.annotation_file} exist")
            self._samples, self._problems = samples, problems
        return self._samples[: self.limit] if self.limit is not None else list(self._samples)

    def problems(self) -> list[str]:
        """Entries left out of the evaluation (images missing on disk under ``missing_images="skip"``)."""
        self.samples()
        return list(self._problems)

    def _images_by_name(self) -> dict[str, dict[str, Any]]:
        coco = self.coco()
        if self._by_name is None or self._by_name[0] is not coco:
            self._by_name = (coco, {img["file_name"]: img for img in coco.imgs.values()})
        return self._by_name[1]

    def _entry_of(self, sample: Sample) -> dict[str, Any]:
        try:
            return self._images_by_name()[sample.id]
        except KeyError:
            raise KeyError(f"dataset {self.name!r}: no image {sample.id!r} in {self.annotation_file}") from None

    def load(self, sample: Sample) -> np.ndarray:
        """The image as RGB; a size that differs from the JSON's is an error (boxes would not fit)."""
        image = read_rgb8(sample.source)
        if sample.id in self._sizes:
            image_id, width, height = self._sizes[sample.id]
        else:
            entry = self._entry_of(sample)
            image_id, width, height = entry["id"], entry["width"], entry["height"]
        if image.shape[:2] != (height, width):
            raise ImageError(
                f"{sample.source}: decoded size {image.shape[1]}x{image.shape[0]} differs from "
                f"{width}x{height} in {self.annotation_file} (image id {image_id})"
            )
        return image

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, Any]:
        """Per sample ``{"annotation_file", "image_id", "width", "height"}``: the evaluator reads the rest."""
        if kind not in self.label_kinds:
            raise KeyError(f"dataset {self.name!r} has no {kind} labels")
        coco = self.coco()
        annotation_file = str(self.annotation_file.resolve())
        out: dict[str, Any] = {}
        for sample in samples:
            entry = self._entry_of(sample)
            if kind == INSTANCE_SEGMENTATION:
                bad = [a["id"] for a in coco.imgToAnns.get(entry["id"], []) if "segmentation" not in a]
                if bad:
                    raise CocoFormatError(
                        f"{self.annotation_file}: annotation id {bad[0]} (image {entry['id']}) has no "
                        "'segmentation': instance segmentation cannot be evaluated"
                    )
            out[sample.id] = {
                "annotation_file": annotation_file,
                "image_id": entry["id"],
                "width": entry["width"],
                "height": entry["height"],
            }
        return out

    def describe(self) -> str:
        return f"{self.name} ({self.image_dir}, {self.annotation_file.name})"


# --- fetch --------------------------------------------------------------------------------------

#: the official archives: url, size in bytes, MD5 (as published by many mirrors and checkers)
COCO_ARCHIVES: dict[str, tuple[str, int, str]] = {
    "val2017.zip": ("http://images.cocodataset.org/zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations_trainval2017.zip": (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        252_907_541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
    ),
}
#: members of the annotation archive the benchmark reads
ANNOTATION_MEMBERS = ("annotations/instances_val2017.json",)


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the published checksum is MD5; integrity, not security
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, size: int) -> None:
    from tqdm import tqdm

    from bench.fetch import FetchError

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(part, "wb") as out:  # noqa: S310
            with tqdm(total=size, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(part, target)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise FetchError(
            f"cannot download {url} ({getattr(exc, 'reason', exc)}). This machine may be offline: download "
            f"{', '.join(COCO_ARCHIVES)} elsewhere and put them in {target.parent}, then run the fetch again "
            "(it checks and unpacks archives already there)"
        ) from exc


def _verify(path: Path, size: int, md5: str | None) -> None:
    from bench.fetch import FetchError

    actual = path.stat().st_size
    if actual != size:
        raise FetchError(f"{path}: {actual} bytes, expected {size}; delete it and fetch again")
    if md5 and (digest := _md5(path)) != md5:
        raise FetchError(f"{path}: MD5 {digest}, expected {md5}; delete it and fetch again")


def _extract(archive: Path, root: Path, members: Iterable[str] | None = None) -> None:
    """Unpack ``members`` (all when None) under ``root``; refuses paths that leave it."""
    from bench.fetch import FetchError

    root_resolved = root.resolve()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist() if members is None else list(members)
        for name in names:
            dest = (root / name).resolve()
            if root_resolved not in dest.parents and dest != root_resolved:
                raise FetchError(f"{archive}: member {name!r} would unpack outside {root}")
            if name.endswith("/"):
                dest.mkdir(parents=True, exist_ok=True)
                continue
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise FetchError(f"{archive}: has no member {name!r}; is it the official archive?") from None
            if dest.is_file() and dest.stat().st_size == info.file_size:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            with zf.open(info) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)


def fetch_coco(root: Path, keep_archives: bool = False) -> Path:
    """Download and unpack COCO 2017 val (5000 images + instances annotations) into ``root``.

    Archives already in ``root`` are verified and reused, so an interrupted
    fetch resumes; offline, the first failed request raises one ``FetchError``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for fname, (url, size, md5) in COCO_ARCHIVES.items():
        archive = root / fname
        done = root / f".{fname}.unpacked"  # written last: its presence means this archive is fully unpacked
        if done.is_file():
            continue
        if not archive.is_file():
            _download(url, archive, size)
        _verify(archive, size, md5)
        _extract(archive, root, ANNOTATION_MEMBERS if fname.startswith("annotations") else None)
        done.write_text(f"{url} {size} {md5}\n")
        if not keep_archives:
            archive.unlink()
    return root
