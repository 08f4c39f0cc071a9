"""COCO detection / instance segmentation: dataset adapter, evaluator, decoders, networks.

The evaluator is checked against references it does not share code with:
AP values worked out by hand, and pycocotools' ``COCOeval`` called directly on
the same files. Decoders are checked on synthetic head outputs with known
boxes. The real detectors run only with the shared assets (HMC_BENCH_ASSETS).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pickle
import time
import urllib.error
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assets_dir, requires_assets
from PIL import Image

from bench.datasets.base import DatasetUnavailable
from bench.datasets.coco import COCO80, CocoDetection, CocoFormatError, load_annotations
from bench.io.images import ImageError
from bench.tasks.base import TaskUnavailable
from bench.tasks.detection import OnnxDetector, TorchvisionDetector, TorchvisionInstanceSegmenter
from bench.tasks.evaluators import coco as coco_eval
from bench.tasks.networks.detectors import batched_nms, decode_nanodet, decode_yolox, postprocess, read_label_map

# --- a synthetic COCO dataset: coloured rectangles and their instances JSON -------------------------

CATEGORIES = [(1, "person"), (3, "car"), (18, "dog"), (90, "toothbrush")]  # 90: no annotations at all
COLOURS = {1: (220, 40, 40), 3: (40, 200, 40), 18: (40, 40, 220)}


def _rect_polygon(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def make_coco(root: Path, n_images: int = 10, seed: int = 0, crowd: bool = True) -> dict:
    """Write ``root/val2017/*.png`` and ``root/annotations/instances_val2017.json``; return the JSON."""
    rng = np.random.default_rng(seed)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(n_images):
        image_id = 1000 - 37 * i  # ids out of file order: samples must come sorted by id
        w, h = int(rng.integers(180, 260)), int(rng.integers(140, 200))
        canvas = np.full((h, w, 3), 128, np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            cid = int(rng.choice([1, 3, 18]))
            bw, bh = int(rng.integers(6, 80)), int(rng.integers(6, 80))  # small and medium objects only
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            canvas[y : y + bh, x : x + bw] = COLOURS[cid]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cid,
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                    "segmentation": _rect_polygon(float(x), float(y), float(bw), float(bh)),
                }
            )
        name = f"{image_id:012d}.png"
        Image.fromarray(canvas).save(root / "val2017" / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
    if crowd:
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": images[0]["id"],
                "category_id": 1,
                "bbox": [0.0, 0.0, 20.0, 20.0],
                "area": 400.0,
                "iscrowd": 1,
                "segmentation": _rect_polygon(0.0, 0.0, 20.0, 20.0),
            }
        )
    data = {
        "info": {"description": "synthetic"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in CATEGORIES],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return data


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    make_coco(root)
    return root


def oracle_predictions(data: dict, masks: bool = False) -> dict[str, list[dict]]:
    """The ground truth (crowd regions left out) as predictions with score 1."""
    from pycocotools import mask as mask_utils

    names = {img["id"]: img for img in data["images"]}
    out: dict[str, list[dict]] = {img["file_name"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if ann["iscrowd"]:
            continue
        img = names[ann["image_id"]]
        det = {"bbox": ann["bbox"], "score": 1.0, "category_id": ann["category_id"]}
        if masks:
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"]))
            det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        out[img["file_name"]].append(det)
    return out


def perturbed_predictions(data: dict, seed: int = 1) -> dict[str, list[dict]]:
    """Shifted and rescaled boxes, some dropped, false positives added, random scores."""
    rng = np.random.default_rng(seed)
    preds = oracle_predictions(data)
    cats = [c for c, _ in CATEGORIES]
    for img in data["images"]:
        dets = []
        for det in preds[img["file_name"]]:
            if rng.random() < 0.25:
                continue
            x, y, w, h = det["bbox"]
            dets.append(
                {
                    "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.8, 1.2), h],
                    "score": float(rng.uniform(0.05, 1)),
                    "category_id": det["category_id"] if rng.random() < 0.9 else int(rng.choice(cats)),
                }
            )
        for _ in range(int(rng.integers(0, 3))):
            dets.append(
                {
                    "bbox": [float(rng.uniform(0, 100)), float(rng.uniform(0, 80)), 30.0, 25.0],
                    "score": float(rng.uniform(0, 0.6)),
                    "category_id": int(rng.choice(cats)),
                }
            )
        preds[img["file_name"]] = dets
    return preds


def direct_cocoeval(ann_file: Path, predictions: dict, data: dict, iou_type: str = "bbox", ids=None) -> np.ndarray:
    """pycocotools used the documented way, on the files themselves: the independent reference."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    by_name = {img["file_name"]: img["id"] for img in data["images"]}
    results = [{**copy.deepcopy(d), "image_id": by_name[sid]} for sid, dets in predictions.items() for d in dets]
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(ids if ids is not None else gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.where(ev.stats < 0, np.nan, ev.stats)


def ours(scores: dict[str, float], prefix: str = "") -> np.ndarray:
    return np.array([scores[prefix + n] for n in coco_eval.STAT_NAMES])


def yolox_task(**kw) -> OnnxDetector:
    opts = dict(model="missing/yolox_nano.onnx", decoder="yolox", input_size=416, multi_label=True)
    opts.update(kw)
    return OnnxDetector("yolox-test", **opts)


# --- (a) the evaluator against independent references -----------------------------------------------


def test_ground_truth_as_predictions_scores_one(coco_root):
    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    ds = CocoDetection(coco_root)
    samples = ds.samples()
    scores = yolox_task().evaluate(oracle_predictions(data), ds.targets("detection", samples))
    assert scores["mAP"] == 1.0 and scores["mAP50"] == 1.0 and scores["mAP75"] == 1.0
    assert scores["AR100"] == 1.0
    assert math.isnan(scores["mAP_large"])  # no large objects: NaN, not pycocotools' -1


def _single_image_coco(tmp_path: Path, boxes: list[list[float]]) -> tuple[Path, dict]:
    root = tmp_path / "one"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(root / "val2017" / "a.png")
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 400, "height": 300}],
        "annotations": [
            {"id": i + 1, "image_id": 7, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root, data


def test_average_precision_worked_out_by_hand(tmp_path):
    # two objects; ranked detections: hit (0.9), false positive (0.8), hit (0.7).
    # precision/recall: (1, .5), (.5, .5), (2/3, 1) -> interpolated 1 for the 51 recall points <= .5,
    # 2/3 for the 50 above: AP = (51 + 50 * 2/3) / 101 at every IoU threshold (exact boxes).
    root, _ = _single_image_coco(tmp_path, [[10.0, 10.0, 50.0, 50.0], [200.0, 100.0, 50.0, 50.0]])
    ds = CocoDetection(root)
    preds = {
        "a.png": [
            {"bbox": [10, 10, 50, 50], "score": 0.9, "category_id": 1},
            {"bbox": [300, 200, 50, 50], "score": 0.8, "category_id": 1},
            {"bbox": [200, 100, 50, 50], "score": 0.7, "category_id": 1},
        ]
    }
    scores = yolox_task().evaluate(preds, ds.targets("detection", ds.samples()))
    expected = (51 + 50 * 2 / 3) / 101
    assert scores["mAP"] == pytest.approx(expected, abs=1e-12)
    assert scores["mAP50"] == pytest.approx(expected, abs=1e-12)
    assert scores["mAP_medium"] == pytest.approx(expected, abs=1e-12)  # 50 x 50 boxes are "medium"
    assert math.isnan(scores["mAP_small"]) and scores["AR100"] == 1.0


def test_iou_thresholds_worked_out_by_hand(tmp_path):
    # IoU 0.72: a hit at thresholds 0.50..0.70 (5 of 10), a miss above: mAP 0.5, AP50 1, AP75 0
    root, _ = _single_image_coco(tmp_path, [[0.0, 0.0, 100.0, 100.0]])
    ds = CocoDetection(root)
    preds = {"a.png": [{"bbox": [0, 0, 100, 72], "score": 0.5, "category_id": 1}]}
    scores = yolox_task().evaluate(preds, ds.targets("detection", ds.samples()))
    # (pycocotools adds np.spacing(1) to the precision's denominator: equal to 1e-15)
    assert [scores["mAP"], scores["mAP50"], scores["mAP75"]] == pytest.approx([0.5, 1.0, 0.0], abs=1e-12)


def test_perturbed_predictions_match_direct_cocoeval(coco_root):
    ann_file = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann_file.read_text())
    ds = CocoDetection(coco_root)
    preds = perturbed_predictions(data)
    scores = yolox_task().evaluate(preds, ds.targets("detection", ds.samples()))
    reference = direct_cocoeval(ann_file, preds, data)
    assert 0.1 < reference[0] < 0.9  # a non-trivial case
    np.testing.assert_array_equal(ours(scores), reference)


def test_subset_is_evaluated_as_pycocotools_imgids(coco_root):
    ann_file = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann_file.read_text())
    ds = CocoDetection(coco_root)
    subset = ds.samples()[::2]
    preds = {s.id: p for s, p in ((s, perturbed_predictions(data, seed=3)[s.id]) for s in subset)}
    scores = yolox_task().evaluate(preds, ds.targets("detection", subset))
    ids = [ds.targets("detection", [s])[s.id]["image_id"] for s in subset]
    np.testing.assert_array_equal(ours(scores), direct_cocoeval(ann_file, preds, data, ids=ids))


# pycocotools' mask.decode trips numpy 2's copy-keyword deprecation (its code, called only by this test)
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_masks_evaluated_as_pycocotools_segm(coco_root):
    ann_file = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann_file.read_text())
    ds = CocoDetection(coco_root)
    refs = ds.targets("instance_segmentation", ds.samples())
    oracle = oracle_predictions(data, masks=True)
    task = TorchvisionInstanceSegmenter("mask", weights=None)
    perfect = task.evaluate(oracle, refs)
    assert perfect["mAP"] == 1.0 and perfect["bbox_mAP"] == 1.0
    assert set(perfect) == set(task.metrics)
    # shrink every mask by a few rows and drop some: compare with COCOeval(segm) run directly
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    damaged = {}
    for sid, dets in oracle.items():
        out = []
        for det in dets:
            if rng.random() < 0.2:
                continue
            m = mask_utils.decode(det["segmentation"]).copy()
            rows = np.nonzero(m.any(axis=1))[0]
            m[rows[: int(rng.integers(0, max(1, len(rows) // 2)))]] = 0
            rle = mask_utils.encode(np.asfortranarray(m))
            seg = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
            out.append({**det, "segmentation": seg, "score": float(rng.uniform(0.1, 1))})
        damaged[sid] = out
    scores = task.evaluate(damaged, refs)
    reference = direct_cocoeval(ann_file, damaged, data, iou_type="segm")
    assert 0.1 < reference[0] < 0.95
    np.testing.assert_array_equal(ours(scores), reference)
    box_reference = direct_cocoeval(ann_file, damaged, data, iou_type="bbox")
    assert scores["bbox_mAP"] == box_reference[0] and scores["bbox_mAP75"] == box_reference[2]


def test_per_class_matches_cocoeval_precision(coco_root):
    ann_file = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann_file.read_text())
    ds = CocoDetection(coco_root)
    refs = ds.targets("detection", ds.samples())
    task = yolox_task()
    assert all(v["AP"] == 1.0 for k, v in task.per_class(oracle_predictions(data), refs).items() if k != "toothbrush")
    preds = perturbed_predictions(data)
    table = task.per_class(preds, refs)
    assert set(table) == {n for _, n in CATEGORIES}
    assert math.isnan(table["toothbrush"]["AP"]) and table["toothbrush"]["gt"] == 0
    n_person = sum(1 for a in data["annotations"] if a["category_id"] == 1 and not a["iscrowd"])
    assert table["person"]["gt"] == n_person
    # the mean over categories with ground truth is the headline mAP
    aps = [v["AP"] for v in table.values() if not math.isnan(v["AP"])]
    assert np.mean(aps) == pytest.approx(task.evaluate(preds, refs)["mAP"], abs=1e-12)


def test_evaluator_refuses_silent_misses(coco_root):
    ds = CocoDetection(coco_root)
    samples = ds.samples()
    refs = ds.targets("detection", samples)
    preds = {s.id: [] for s in samples}
    task = yolox_task()
    empty = task.evaluate(preds, refs)
    assert empty["mAP"] == 0.0  # no detections at all: AP 0, not an error
    bad = dict(preds)
    bad[samples[0].id] = [{"bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 0}]
    with pytest.raises(ValueError, match="category_id 0 is not a ground-truth category"):
        task.evaluate(bad, refs)
    bad[samples[0].id] = [{"bbox": [1, math.nan, 3, 4], "score": 0.5, "category_id": 1}]
    with pytest.raises(ValueError, match="non-finite"):
        task.evaluate(bad, refs)
    with pytest.raises(ValueError, match="same samples"):
        task.evaluate({samples[0].id: []}, refs)


def test_fidelity_protocol(coco_root):
    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    task = yolox_task(reference_score_threshold=0.5)
    preds = perturbed_predictions(data)
    refs = {sid: task.reference_from_prediction(p) for sid, p in preds.items()}
    kept = sum(len(r["objects"]) for r in refs.values())
    assert kept == sum(1 for p in preds.values() for d in p if d["score"] >= 0.5)
    json.dumps(refs)  # references are plain JSON too
    # the prediction scored against its own confident part: every reference object is found first
    assert task.evaluate(preds, refs)["mAP"] == 1.0
    shifted = {sid: [{**d, "bbox": [d["bbox"][0] + 4, *d["bbox"][1:]]} for d in p] for sid, p in preds.items()}
    assert 0 < task.evaluate(shifted, refs)["mAP"] < 1
    nothing = {sid: {"objects": []} for sid in preds}
    assert math.isnan(task.evaluate(preds, nothing)["mAP"])
    table = task.per_class(shifted, refs)
    assert len(table) == 80 and "person" in table  # the task's categories name the rows


# --- (b) the dataset adapter ------------------------------------------------------------------------


def test_coco_dataset_samples_targets_and_images(coco_root):
    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    ds = CocoDetection(coco_root)
    samples = ds.samples()
    ids = sorted(img["id"] for img in data["images"])
    assert [s.id for s in samples] == [f"{i:012d}.png" for i in ids]
    assert ds.label_kinds == ("detection", "instance_segmentation")
    assert ds.label_space == yolox_task().label_space == TorchvisionDetector.label_space == "coco"
    targets = ds.targets("detection", samples[:2])
    first = targets[samples[0].id]
    assert first["image_id"] == ids[0] and Path(first["annotation_file"]).is_file()
    img = ds.load(samples[0])
    assert img.dtype == np.uint8 and img.shape == (first["height"], first["width"], 3)
    assert pickle.loads(pickle.dumps(targets)) == targets
    with pytest.raises(KeyError):
        ds.targets("segmentation", samples)
    assert CocoDetection(coco_root, limit=3).samples() == samples[:3]
    clone = pickle.loads(pickle.dumps(ds))  # workers get a copy without the COCO object
    assert clone.load(samples[1]).shape == ds.load(samples[1]).shape
    assert ds.problems() == []


def test_malformed_json_names_the_file(coco_root):
    ann = coco_root / "annotations" / "instances_val2017.json"
    ann.write_text('{"images": [1, 2,}')
    with pytest.raises(CocoFormatError, match=r"instances_val2017.json: not valid JSON .* line 1"):
        CocoDetection(coco_root).samples()
    ann.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(CocoFormatError, match="missing top-level key 'annotations'"):
        CocoDetection(coco_root).samples()


def test_unknown_category_and_bad_entries_are_named(coco_root):
    ann = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][2]["category_id"] = 999
    ann.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError) as err:
        CocoDetection(coco_root).samples()
    msg = str(err.value)
    assert "instances_val2017.json" in msg and "annotations[2] (id 3)" in msg and "category_id 999" in msg
    data["annotations"][2]["category_id"] = 1
    data["annotations"][4]["bbox"] = [1, 2, float("nan"), 4]
    del data["annotations"][5]["area"]
    data["images"][1]["width"] = 0
    ann.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError) as err:
        CocoDetection(coco_root).samples()
    msg = str(err.value)
    assert "3 problem(s)" in msg and "annotations[4]" in msg and "missing 'area'" in msg and "images[1]" in msg


def test_missing_image_error_or_counted_skip(coco_root):
    ds = CocoDetection(coco_root)
    victim = ds.samples()[3]
    Path(victim.source).unlink()
    with pytest.raises(DatasetUnavailable, match=f"names '{victim.id}', not in"):
        CocoDetection(coco_root).samples()
    skipping = CocoDetection(coco_root, missing_images="skip")
    assert victim.id not in [s.id for s in skipping.samples()] and len(skipping.samples()) == 9
    assert len(skipping.problems()) == 1 and victim.id in skipping.problems()[0]


def test_missing_dataset_and_wrong_image_size(tmp_path, coco_root):
    with pytest.raises(DatasetUnavailable, match="fetch coco"):
        CocoDetection(tmp_path / "nowhere").samples()
    annotations = coco_root / "annotations" / "instances_val2017.json"
    annotations.rename(annotations.with_name("instances_val2017_subset10.json"))
    with pytest.raises(DatasetUnavailable, match="annotation file .* not found") as err:
        CocoDetection(coco_root).samples()
    assert "dataset.annotations=annotations/instances_val2017_subset10.json" in str(err.value)  # the one beside it
    root = tmp_path / "sized"
    make_coco(root, n_images=2)
    ds = CocoDetection(root)
    sample = ds.samples()[0]
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(sample.source)
    with pytest.raises(ImageError, match="decoded size 12x10 differs"):
        ds.load(sample)


def test_annotations_reload_when_the_file_changes(coco_root):
    ann = coco_root / "annotations" / "instances_val2017.json"
    first = load_annotations(ann)
    assert load_annotations(ann) is first
    data = json.loads(ann.read_text())
    data["annotations"] = data["annotations"][:1]
    ann.write_text(json.dumps(data) + "\n")
    assert len(load_annotations(ann).anns) == 1


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


def test_fetch_coco_offline_and_from_archives(tmp_path, monkeypatch):
    import hashlib

    from bench.datasets import coco as coco_module
    from bench.fetch import FetchError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(coco_module.urllib.request, "urlopen", offline)
    with pytest.raises(FetchError, match="offline") as err:
        coco_module.fetch_coco(tmp_path / "coco")
    assert "val2017.zip" in str(err.value)
    monkeypatch.undo()

    # the same code path on tiny local archives served by file:// URLs
    src = tmp_path / "src"
    src.mkdir()
    data = make_coco(tmp_path / "made", n_images=2, crowd=False)
    _zip(src / "val2017.zip", {f"val2017/{p.name}": p.read_bytes() for p in (tmp_path / "made" / "val2017").iterdir()})
    _zip(
        src / "annotations_trainval2017.zip",
        {"annotations/instances_val2017.json": json.dumps(data).encode(), "annotations/captions_val2017.json": b"{}"},
    )
    archives = {
        name: ((src / name).as_uri(), (src / name).stat().st_size, hashlib.md5((src / name).read_bytes()).hexdigest())
        for name in coco_module.COCO_ARCHIVES
    }
    monkeypatch.setattr(coco_module, "COCO_ARCHIVES", archives)
    root = coco_module.fetch_coco(tmp_path / "fetched")
    assert len(CocoDetection(root).samples()) == 2
    assert not (root / "annotations" / "captions_val2017.json").exists()  # only what the benchmark reads
    assert coco_module.fetch_coco(root) == root  # done: nothing to download again
    bad = dict(archives)
    bad["val2017.zip"] = (archives["val2017.zip"][0], archives["val2017.zip"][1], "0" * 32)
    monkeypatch.setattr(coco_module, "COCO_ARCHIVES", bad)
    with pytest.raises(FetchError, match="MD5"):
        coco_module.fetch_coco(tmp_path / "again")


# --- (c) decoding one-stage heads ---------------------------------------------------------------------


class FakeSession:
    """Stands in for an onnxruntime session: fixed outputs, records what it was fed."""

    def __init__(self, outputs: list[np.ndarray], shape: list):
        self.outputs = outputs
        self.shape = shape
        self.fed: list[np.ndarray] = []

    def get_inputs(self):
        return [SimpleNamespace(name="images", shape=self.shape)]

    def run(self, names, feeds):
        self.fed.append(feeds["images"])
        return self.outputs


def synthetic_yolox() -> np.ndarray:
    out = np.zeros((3549, 85), np.float32)
    # stride 8, cell (10, 5): centre (84, 44), 32 x 16 -> xyxy (68, 36, 100, 52); obj .9 x class 2 (.8)
    out[5 * 52 + 10, :5] = [0.5, 0.5, np.log(4), np.log(2), 0.9]
    out[5 * 52 + 10, 5 + 2] = 0.8
    # stride 32, cell (3, 7): centre (96, 224), 32 x 32; obj 1 x class 79 (.5)
    out[52 * 52 + 26 * 26 + 7 * 13 + 3, :5] = [0, 0, 0, 0, 1.0]
    out[52 * 52 + 26 * 26 + 7 * 13 + 3, 5 + 79] = 0.5
    return out


def test_decode_yolox_known_boxes():
    boxes, scores = decode_yolox(synthetic_yolox(), (416, 416))
    i = 5 * 52 + 10
    np.testing.assert_allclose(boxes[i], [68, 36, 100, 52], atol=1e-4)
    assert scores[i, 2] == pytest.approx(0.72)
    j = 52 * 52 + 26 * 26 + 7 * 13 + 3
    np.testing.assert_allclose(boxes[j], [80, 208, 112, 240], atol=1e-4)
    with pytest.raises(ValueError, match="3549"):
        decode_yolox(synthetic_yolox(), (320, 320))


def test_yolox_detector_maps_boxes_to_the_original_image():
    task = yolox_task()
    task._session = FakeSession([synthetic_yolox()[None]], [1, 3, 416, 416])
    image = np.zeros((624, 832, 3), np.uint8)  # letterbox ratio 0.5
    image[..., 0] = 200  # red in RGB: must reach the network as the last (BGR) channel
    (pred,) = task.predict([image])
    assert pred == [
        {"bbox": [136.0, 72.0, 64.0, 32.0], "score": 0.72, "category_id": 3},
        {"bbox": [160.0, 416.0, 64.0, 64.0], "score": 0.5, "category_id": 90},
    ]
    fed = task._session.fed[0]
    assert fed.shape == (1, 3, 416, 416) and fed.dtype == np.float32
    assert fed[0, 2, 0, 0] == 200 and fed[0, 0, 0, 0] == 0  # BGR, raw 0..255
    assert fed[0, 0, 400, 0] == 114  # below the 312-row image: the pad value
    json.dumps(pred)


def test_nonfinite_rows_are_dropped_and_counted():
    out = synthetic_yolox()
    out[100, :5] = [np.nan, 0, 0, 0, 0.99]
    out[100, 5] = 0.99
    out[101, :5] = [0, 0, 1e6, 0, 0.99]  # exp overflow: an infinite box
    out[101, 5] = 0.99
    task = yolox_task()
    task._session = FakeSession([out[None]], [1, 3, 416, 416])
    (pred,) = task.predict([np.zeros((416, 416, 3), np.uint8)])
    assert len(pred) == 2 and task.dropped_nonfinite == 2


def test_boxes_are_clipped_to_the_image():
    out = np.zeros((3549, 85), np.float32)
    out[0, :5] = [0, 0, np.log(4), np.log(4), 1.0]  # centre (0, 0), 32 x 32: half outside
    out[0, 5] = 1.0
    task = yolox_task()
    task._session = FakeSession([out[None]], [1, 3, 416, 416])
    (pred,) = task.predict([np.zeros((416, 416, 3), np.uint8)])
    assert pred[0]["bbox"] == [0.0, 0.0, 16.0, 16.0]


def synthetic_nanodet(batch_dim: bool = False) -> list[np.ndarray]:
    n = [1600, 400, 100]
    cls = [np.zeros((k, 80), np.float32) for k in n]
    reg = [np.zeros((k, 32), np.float32) for k in n]
    # stride 16, cell (4, 6): point (71.5, 103.5); distance bins peaked at 2, 1, 3, 2 -> 32, 16, 48, 32
    i = 6 * 20 + 4
    cls[1][i, 0] = 0.9
    cls[1][i, 16] = 0.3  # a second class (dog, id 18) above the threshold for the same box
    for side, k in enumerate([2, 1, 3, 2]):
        reg[1][i, side * 8 + k] = 30.0
    outs = [cls[0], reg[1], cls[1], reg[0], reg[2], cls[2]]  # any order: found by shape
    return [o[None] for o in outs] if batch_dim else outs


@pytest.mark.parametrize("batch_dim", [False, True])
def test_decode_nanodet_known_box(batch_dim):
    boxes, scores = decode_nanodet(synthetic_nanodet(batch_dim), (320, 320))
    i = 1600 + 6 * 20 + 4
    np.testing.assert_allclose(boxes[i], [39.5, 87.5, 119.5, 135.5], atol=1e-4)
    assert scores[i, 0] == pytest.approx(0.9) and scores.shape == (2100, 80)


def test_nanodet_detector_stretch_resize_and_normalisation():
    mean, std = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]
    task = OnnxDetector(
        "nanodet-test",
        model="missing.onnx",
        decoder="nanodet",
        input_size=320,
        resize="stretch",
        mean=mean,
        std=std,
        score_threshold=0.05,
        nms_iou=0.6,
        multi_label=True,
    )
    task._session = FakeSession(synthetic_nanodet(), [1, 3, 320, 320])
    image = np.full((480, 640, 3), (10, 20, 30), np.uint8)  # sx = 0.5, sy = 2/3
    (pred,) = task.predict([image])
    assert pred[0] == {"bbox": [79.0, 131.25, 160.0, 72.0], "score": 0.9, "category_id": 1}
    assert pred[1]["category_id"] == 18 and pred[1]["bbox"] == pred[0]["bbox"]  # multi-label: both classes
    fed = task._session.fed[0][0]
    np.testing.assert_allclose(fed[:, 5, 5], (np.array([30, 20, 10]) - mean) / std, rtol=1e-6)
    task.multi_label = False
    (best_only,) = task.predict([image])
    assert [d["category_id"] for d in best_only] == [1]


def test_class_wise_nms_matches_torchvision():
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms

    rng = np.random.default_rng(0)
    xy = rng.uniform(-50, 300, (400, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (400, 2))], axis=1)
    scores = rng.permutation(400) / 400.0  # distinct scores: a unique order
    labels = rng.integers(0, 5, 400)
    expected = tv_batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(labels), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.5), expected)
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.5, max_keep=30), expected[:30])


def test_postprocess_threshold_and_limit():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.7], [0.0, 0.02]], np.float32)
    b, s, c, dropped = postprocess(boxes, scores, 0.05, 0.5, 100, multi_label=True)
    assert list(c) == [0, 1] and dropped == 0  # box 1 class 0 suppressed by box 0; class 1 kept
    b, s, c, _ = postprocess(boxes, scores, 0.01, 0.5, 1, multi_label=True)
    assert list(s) == [pytest.approx(0.9)]


def test_label_maps(tmp_path):
    assert read_label_map(None) == list(COCO80) and len(COCO80) == 80
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("index\tcoco_category_id\tname\n0\t1\tperson\n1\t3\tcar\n")
    assert read_label_map(tsv) == [(1, "person"), (3, "car")]
    assert read_label_map([1, 90]) == [(1, "person"), (90, "toothbrush")]
    assert read_label_map([[5, "thing"]]) == [(5, "thing")]
    task = yolox_task(labels=str(tsv))
    task._session = FakeSession([synthetic_yolox()[None]], [1, 3, 416, 416])
    with pytest.raises(ValueError, match="80 classes, the label map has 2"):
        task.predict([np.zeros((416, 416, 3), np.uint8)])


def test_missing_model_is_one_clear_message(tmp_path):
    task = yolox_task(model=str(tmp_path / "yolox_nano_coco" / "yolox_nano.onnx"), source="the YOLOX releases")
    why = task.unavailable_reason()
    assert "yolox_nano.onnx not found" in why and "the YOLOX releases" in why and "HMC_BENCH_WEIGHTS" in why
    with pytest.raises(TaskUnavailable, match="yolox_nano.onnx"):
        task.predict([np.zeros((8, 8, 3), np.uint8)])
    task._session = FakeSession([synthetic_yolox()[None]], [1, 3, 416, 416])
    clone = pickle.loads(pickle.dumps(task))  # sessions stay in their process
    assert clone._session is None and clone.input_hw == (416, 416)


def test_wrong_input_size_is_reported(tmp_path, monkeypatch):
    task = yolox_task(model=str(tmp_path / "m.onnx"), input_size=320)
    (tmp_path / "m.onnx").write_bytes(b"x")
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: FakeSession([], [1, 3, 416, 416]))
    with pytest.raises(ValueError, match=r"takes input \[1, 3, 416, 416\], configured input_size is \[320, 320\]"):
        task.session()


# --- torchvision networks (no weights downloaded) -------------------------------------------------


@pytest.mark.parametrize(
    "model", ["fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn"]
)
def test_torchvision_labels_are_coco_category_ids(model):
    task = TorchvisionDetector("det", model=model)
    assert task.categories() == list(COCO80)


def test_torchvision_missing_weights_names_file_url_and_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    task = TorchvisionDetector("det")
    why = task.unavailable_reason()
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in why
    assert "TORCH_HOME" in why and str(tmp_path / "torch") in why
    assert "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in why
    with pytest.raises(TaskUnavailable, match="258fb6c6"):
        task.predict([np.zeros((32, 32, 3), np.uint8)])
    assert "has no weights" in TorchvisionDetector("det", weights="NOPE").unavailable_reason()
    assert "no detection model" in TorchvisionDetector("det", model="resnet50").unavailable_reason()


def test_torchvision_detector_untrained_network_runs_and_trains():
    import torch

    torch.manual_seed(0)
    task = TorchvisionDetector(
        "det", model="fasterrcnn_mobilenet_v3_large_fpn", weights=None, device="cpu", score_threshold=0.0,
        min_size=96, max_size=128,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), rng.integers(0, 255, (70, 64, 3), dtype=np.uint8)]
    preds = task.predict(images)
    assert len(preds) == 2
    json.dumps(preds)
    for pred, img in zip(preds, images):
        for det in pred:
            x, y, w, h = det["bbox"]
            assert 0 <= x and x + w <= img.shape[1] + 0.01 and 0 <= y and y + h <= img.shape[0] + 0.01
            assert det["category_id"] in dict(COCO80)
    net = task.network
    assert isinstance(net, torch.nn.Module)
    net.train()
    x = torch.rand(3, 64, 64)
    losses = net([x], [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 40.0]]), "labels": torch.tensor([1])}])
    total = sum(losses.values())
    total.backward()  # differentiable: training can start from here
    assert any(p.grad is not None for p in net.parameters())
    task.predict(images[:1])
    assert net.training  # predict runs in eval mode and puts the mode back


def test_mask_rcnn_untrained_gives_rle_masks():
    import torch

    torch.manual_seed(0)
    task = TorchvisionInstanceSegmenter(
        "mask", weights=None, device="cpu", score_threshold=0.0, min_size=64, max_size=96, max_detections=5
    )
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    (pred,) = task.predict([image])
    json.dumps(pred)
    for det in pred:
        assert det["segmentation"]["size"] == [60, 80] and isinstance(det["segmentation"]["counts"], str)
    if pred:
        refs = {"a": task.reference_from_prediction([{**d, "score": 1.0} for d in pred])}
        scores = task.evaluate({"a": pred}, refs)
        assert scores["mAP"] == pytest.approx(1.0) and scores["bbox_mAP"] == pytest.approx(1.0)


# --- (d) the real detectors on the assets' COCO subset -------------------------------------------


def _assets_task(config: str) -> OnnxDetector:
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HMC_BENCH_WEIGHTS", str(assets_dir() / "weights"))
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            return instantiate(compose("config", overrides=[f"task={config}"]).task)


def _assets_coco() -> CocoDetection:
    return CocoDetection(assets_dir() / "coco", annotations="annotations/instances_val2017_subset158.json")


def _ap_and_speed(task: OnnxDetector, record_property) -> dict[str, float]:
    ds = _assets_coco()
    samples = ds.samples()
    assert len(samples) == 158
    task.predict([ds.load(samples[0])])  # session start-up is not throughput
    start = time.perf_counter()
    preds = {s.id: task.predict([ds.load(s)])[0] for s in samples}
    rate = len(samples) / (time.perf_counter() - start)
    scores = task.evaluate(preds, ds.targets("detection", samples))
    record_property("images_per_second", round(rate, 1))
    record_property("mAP", round(scores["mAP"], 4))
    print(f"{task.name}: AP {scores['mAP']:.4f} AP50 {scores['mAP50']:.4f}, {rate:.1f} images/s (load + predict)")
    assert task.dropped_nonfinite == 0
    return scores


@pytest.mark.assets
@requires_assets
def test_yolox_nano_reproduces_subset_ap(record_property):
    scores = _ap_and_speed(_assets_task("yolox-nano"), record_property)
    assert scores["mAP"] == pytest.approx(0.287, abs=0.01)
    assert scores["mAP50"] == pytest.approx(0.454, abs=0.01)


@pytest.mark.assets
@requires_assets
def test_nanodet_m_reproduces_subset_ap(record_property):
    scores = _ap_and_speed(_assets_task("nanodet-m"), record_property)
    assert scores["mAP"] == pytest.approx(0.228, abs=0.01)
    assert scores["mAP50"] == pytest.approx(0.376, abs=0.01)


@pytest.mark.assets
@requires_assets
def test_assets_coco_subset_ground_truth_and_labels():
    import csv

    ds = _assets_coco()
    samples = ds.samples()
    data = json.loads(ds.annotation_file.read_text())
    refs = ds.targets("instance_segmentation", samples)
    scores = TorchvisionInstanceSegmenter("mask", weights=None).evaluate(oracle_predictions(data, masks=True), refs)
    assert scores["mAP"] == 1.0 and scores["bbox_mAP"] == 1.0  # crowd regions included in the ground truth
    with open(assets_dir() / "labels" / "coco80_classes.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [(int(r["coco_category_id"]), r["name"]) for r in rows] == list(COCO80)
    assert read_label_map(assets_dir() / "labels" / "coco80_classes.tsv") == list(COCO80)
    assert sorted((c["id"], c["name"]) for c in data["categories"]) == list(COCO80)
