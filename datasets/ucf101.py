"""UCF101 action recognition in its official layout, with its three train/test splits.

``<root>/UCF-101/<Class>/v_<Class>_gNN_cNN.avi`` (what ``UCF101.rar`` unpacks
to) and ``<root>/ucfTrainTestlist/`` (``UCF101TrainTestSplits-RecognitionTask.zip``):

- ``classInd.txt``: ``<index> <Class>`` per line, **1-based** (1 ApplyEyeMakeup
  ... 101 YoYo); labels here are 0-based (index - 1), the order of a
  101-way classifier head;
- ``testlist0{1,2,3}.txt``: one ``<Class>/<file>.avi`` per line, the label is
  the class folder's;
- ``trainlist0{1,2,3}.txt``: ``<Class>/<file>.avi <index>``, 1-based, checked
  against the folder's class.

The files come with CRLF line endings (read either way). A class folder is
matched to ``classInd.txt`` exactly, else ignoring case (the list says
``HandstandPushups`` while its files are ``v_HandStandPushups_*``). A split
entry whose video is not on disk is an error naming it, unless
``missing_videos: skip`` (then the run covers the videos present, and
:meth:`UCF101.problems` lists the others).

``python -m bench fetch ucf101`` downloads both archives from the official
site (https://www.crcv.ucf.edu/data/UCF101.php) and unpacks them (the RAR
with ``unrar``, ``7z`` or ``bsdtar``).
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from bench.datasets.base import DatasetUnavailable, Sample
from bench.datasets.video_folder import VideoDataset

VIDEOS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar"
SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
NUM_CLASSES = 101
LABEL_KIND = "action"
LABEL_SPACE = "ucf101"


class SplitFileError(DatasetUnavailable, ValueError):
    """A class list or split file that does not parse; the message names the file and line."""


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines; CRLF or LF."""
    if not path.is_file():
        raise SplitFileError(f"UCF101 split file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | Path) -> list[str]:
    """Class names in label order (label = the file's 1-based index - 1)."""
    path = Path(path)
    classes: dict[int, str] = {}
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitFileError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        index = int(parts[0])
        if index in classes:
            raise SplitFileError(f"{path}:{lineno}: index {index} is listed twice")
        classes[index] = parts[1]
    expected = list(range(1, len(classes) + 1))
    if sorted(classes) != expected:
        raise SplitFileError(f"{path}: indices must run 1..{len(classes)} (1-based), got {sorted(classes)[:5]}...")
    return [classes[i] for i in expected]


def _class_lookup(classes: list[str]) -> dict[str, int]:
    lookup = {name: i for i, name in enumerate(classes)}
    lookup.update({name.lower(): i for i, name in enumerate(classes)})
    return lookup


def read_split(path: str | Path, classes: list[str]) -> dict[str, int]:
    """Video path (``Class/file.avi``) -> 0-based label, from a test or train list."""
    path = Path(path)
    lookup = _class_lookup(classes)
    out: dict[str, int] = {}
    for lineno, line in _lines(path):
        parts = line.split()
        video = parts[0].replace("\\", "/")
        folder = video.split("/")[0] if "/" in video else ""
        label = lookup.get(folder, lookup.get(folder.lower()))
        if label is None:
            raise SplitFileError(f"{path}:{lineno}: class folder {folder!r} of {video!r} is not in classInd.txt")
        if len(parts) > 2:
            raise SplitFileError(f"{path}:{lineno}: expected '<Class>/<file>.avi [index]', got {line!r}")
        if len(parts) == 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise SplitFileError(f"{path}:{lineno}: class index {parts[1]!r} is not in 1..{len(classes)}")
            if int(parts[1]) - 1 != label:
                raise SplitFileError(
                    f"{path}:{lineno}: index {parts[1]} is {classes[int(parts[1]) - 1]!r} (1-based), "
                    f"but {video!r} is in folder {folder!r}"
                )
        if video in out:
            raise SplitFileError(f"{path}:{lineno}: {video} is listed twice")
        out[video] = label
    if not out:
        raise SplitFileError(f"{path}: no videos listed")
    return out


class UCF101(VideoDataset):
    """One UCF101 split (1-3), test or train videos, as sampled clips with 0-based labels."""

    label_kinds = (LABEL_KIND,)
    label_space = LABEL_SPACE

    def __init__(
        self,
        root: str | Path,
        split: int = 1,
        subset: str = "test",
        videos: str = "UCF-101",
        splits: str = "ucfTrainTestlist",
        missing_videos: str = "error",
        name: str = "ucf101",
        limit: int | None = None,
        frames: int | None = 16,
        stride: int = 1,
        start: str | int = "center",
        short: str = "repeat_last",
    ):
        super().__init__(frames=frames, stride=stride, start=start, short=short)
        if int(split) not in (1, 2, 3):
            raise ValueError(f"dataset {name!r}: split must be 1, 2 or 3, not {split!r}")
        if subset not in ("test", "train"):
            raise ValueError(f"dataset {name!r}: subset must be 'test' or 'train', not {subset!r}")
        if missing_videos not in ("error", "skip"):
            raise ValueError(f"dataset {name!r}: missing_videos must be 'error' or 'skip', not {missing_videos!r}")
        self.root = Path(root).expanduser()
        self.videos_dir = self.root / videos
        self.splits_dir = self.root / splits
        self.split = int(split)
        self.subset = subset
        self.missing_videos = missing_videos
        self.name = name
        self.limit = limit
        self._labels: dict[str, int] | None = None
        self._classes: list[str] | None = None
        self._missing: list[str] = []
        self._folders: dict[str, Path] | None = None

    @property
    def split_file(self) -> Path:
        return self.splits_dir / f"{self.subset}list0{self.split}.txt"

    @property
    def classes(self) -> list[str]:
        """Class names, label order."""
        if self._classes is None:
            self._classes = read_class_index(self.splits_dir / "classInd.txt")
        return self._classes

    def _fetch_hint(self) -> str:
        return f"get it with `python -m bench fetch ucf101 --root {self.root}` (from {VIDEOS_URL} and {SPLITS_URL})"

    def labels(self) -> dict[str, int]:
        """Sample id (``Class/file.avi``) -> 0-based label, for the videos of the split."""
        if self._labels is None:
            if not self.videos_dir.is_dir() or not self.splits_dir.is_dir():
                raise DatasetUnavailable(
                    f"dataset {self.name!r}: {self.root} does not hold UCF-101/ and ucfTrainTestlist/; "
                    + self._fetch_hint()
                )
            listed = read_split(self.split_file, self.classes)
            present = {v: lab for v, lab in listed.items() if self._video_path(v) is not None}
            self._missing = sorted(set(listed) - set(present))
            if self._missing and self.missing_videos == "error":
                raise DatasetUnavailable(
                    f"dataset {self.name!r}: {len(self._missing)} of the {len(listed)} videos of "
                    f"{self.split_file.name} are not under {self.videos_dir} (e.g. {self._missing[0]}); "
                    f"{self._fetch_hint()}, or set dataset.missing_videos=skip to run on the videos present"
                )
            if not present:
                raise DatasetUnavailable(f"dataset {self.name!r}: none of the videos of {self.split_file} exist")
            self._labels = present
        return self._labels

    def _video_path(self, video: str) -> Path | None:
        path = self.videos_dir / video
        if path.is_file():
            return path
        if self._folders is None:  # class folders by lower-case name, for folders named with other case
            self._folders = {p.name.lower(): p for p in self.videos_dir.iterdir() if p.is_dir()}
        folder, _, fname = video.partition("/")
        other = self._folders.get(folder.lower())
        return other / fname if other is not None and (other / fname).is_file() else None

    def samples(self) -> list[Sample]:
        ids = sorted(self.labels())
        if self.limit is not None:
            ids = ids[: self.limit]
        return [Sample(id=v, source=str(self._video_path(v))) for v in ids]

    def problems(self) -> list[str]:
        """Split entries skipped because their video is not on disk (``missing_videos: skip``)."""
        self.labels()
        return [f"{v}: not under {self.videos_dir}" for v in self._missing]

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, Any]:
        if kind != LABEL_KIND:
            raise KeyError(f"dataset {self.name!r} has no {kind} labels (it has {LABEL_KIND})")
        labels = self.labels()
        return {s.id: {"label": labels[s.id]} for s in samples}

    def describe(self) -> str:
        return f"{self.name} split {self.split} {self.subset} ({self.root}; {self.sampler.describe()})"


def _unrar(archive: Path, root: Path) -> None:
    """Unpack a RAR archive into ``root`` with the first tool found."""
    from bench.fetch import FetchError

    tools = [
        ("unrar", ["unrar", "x", "-o+", "-idq", str(archive), str(root) + "/"]),
        ("7z", ["7z", "x", "-y", f"-o{root}", str(archive)]),
        ("bsdtar", ["bsdtar", "-xf", str(archive), "-C", str(root)]),
    ]
    for tool, cmd in tools:
        if shutil.which(tool):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise FetchError(f"{tool} could not unpack {archive}: {proc.stderr.strip()[-500:]}")
            return
    raise FetchError(
        f"{archive} is downloaded but no RAR tool is installed (unrar, 7z or bsdtar): unpack it into {root} "
        f"yourself (e.g. `unrar x {archive} {root}/`), then the dataset is ready"
    )


def fetch_ucf101(root: Path) -> Path:
    """Download the videos and the split lists from the official site and unpack them into ``root``."""
    from bench.fetch import download

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "ucfTrainTestlist" / "classInd.txt").is_file():
        archive = root / Path(SPLITS_URL).name
        if not archive.is_file():
            download(SPLITS_URL, archive)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("ucfTrainTestlist/") and ".." not in member:
                    zf.extract(member, root)
    if not (root / "UCF-101").is_dir():
        archive = root / Path(VIDEOS_URL).name
        if not archive.is_file():
            download(VIDEOS_URL, archive, timeout=120.0)
        _unrar(archive, root)
    return root
