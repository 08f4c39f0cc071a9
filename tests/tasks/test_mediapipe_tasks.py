"""MediaPipe tasks: the keypoint evaluator by hand, install messages, the real networks on astronaut, a JPEG sweep."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.tasks import mediapipe_tasks as mpt
from bench.tasks.evaluators.segmentation import read_prediction
from bench.tasks.faces import box_iou

WHY = mpt.mediapipe_problem(mpt.MediaPipePose("p").model_files())
needs_mediapipe = pytest.mark.skipif(WHY is not None, reason=f"MediaPipe cannot run here: {WHY}")
#: the astronaut's face in skimage.data.astronaut() (dlib HOG finds it at about x 180, y 60, 90 x 110)
ASTRONAUT_FACE = [175, 60, 95, 115]


# --------------------------------------------------------------------------- evaluator by hand


def _person(shift: float = 0.0, visibility: float = 1.0) -> dict:
    # 4 keypoints on a 30 x 40 box: diagonal 50
    return {"points": [[0 + shift, 0, visibility], [30 + shift, 0, visibility], [0 + shift, 40, 1.0], [30, 40, 0.1]]}


def test_keypoint_metrics_by_hand():
    ref = _person()
    # image a: every keypoint 2 px off (error 0.04 <= 0.05: correct); the invisible 4th is not counted
    # image b: no person found: 3 keypoints at error 1; image c: no person in the reference: skipped
    preds = {"a": _person(2.0), "b": {"points": []}, "c": _person()}
    refs = {"a": ref, "b": ref, "c": {"points": []}}
    out = mpt.evaluate_keypoints(preds, refs)
    # the scale comes from the 3 visible reference points: box 30 x 40, diagonal 50
    assert out["PCK"] == pytest.approx(3 / 6)
    assert out["NKE"] == pytest.approx((3 * 2 / 50 + 3 * 1.0) / 6)
    assert out["missed"] == 1 and out["no_reference_person"] == 1
    # a stricter threshold fails image a; errors are capped at 1
    assert mpt.evaluate_keypoints({"a": _person(2.0)}, {"a": ref}, threshold=0.03)["PCK"] == 0.0
    assert mpt.evaluate_keypoints({"a": _person(500.0)}, {"a": ref})["NKE"] == 1.0
    assert math.isnan(mpt.evaluate_keypoints({"c": _person()}, {"c": {"points": []}})["PCK"])
    with pytest.raises(ValueError, match="2 predicted keypoints, the reference has 4"):
        mpt.evaluate_keypoints({"a": {"points": ref["points"][:2]}}, {"a": ref})


def test_install_messages(monkeypatch):
    real = importlib.metadata.version

    def fake(versions):
        return lambda name: versions[name] if name in versions else real(name)

    monkeypatch.setattr(mpt.importlib.util, "find_spec", lambda name: None)
    why = mpt.MediaPipeFaceDetection("mp-face").unavailable_reason()
    assert why == f"mp-face: mediapipe is not installed ({mpt.INSTALL})"
    assert "pip install --no-deps mediapipe==0.10.21" in why and "hmc-bench[mediapipe]" in why
    monkeypatch.undo()
    if mpt.package_dir() is None:
        pytest.skip("mediapipe is not installed: version messages need its folder")
    monkeypatch.setattr(mpt.importlib.metadata, "version", fake({"mediapipe": "1.2.2"}))
    assert "ships no solution models" in mpt.mediapipe_problem()
    monkeypatch.setattr(mpt.importlib.metadata, "version", fake({"mediapipe": "0.10.21", "protobuf": "7.36.2"}))
    assert "needs protobuf 4.x, found 7.36.2: pip install 'protobuf>=4.25.8,<5'" in mpt.mediapipe_problem()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="model_complexity must be 1: mediapipe 0.10.21 ships only that pose model"):
        mpt.MediaPipePose("pose", model_complexity=2)
    with pytest.raises(ValueError, match="model_selection must be 0 .short range. or 1"):
        mpt.MediaPipeFaceDetection("face", model_selection=3)


# --------------------------------------------------------------------------- the real networks


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@needs_mediapipe
def test_real_networks_find_the_astronaut(astronaut):
    det = mpt.MediaPipeFaceDetection("mp-face")
    (faces,) = det.predict([astronaut])
    assert len(faces) == 1 and faces[0]["score"] > 0.8
    box = faces[0]["bbox"]
    assert box_iou(box, ASTRONAUT_FACE) > 0.5
    x, y, w, h = box
    assert len(faces[0]["keypoints"]) == 6
    assert all(x <= kx <= x + w and y <= ky <= y + h for kx, ky in faces[0]["keypoints"][:4])  # eyes, nose, mouth

    mesh = mpt.MediaPipeFaceMesh("mp-mesh")
    (face,) = mesh.predict([astronaut])
    assert len(face["points"]) == 478 and box_iou(face["bbox"], ASTRONAUT_FACE) > 0.5
    right, left = (np.array(face["points"][i]) for i in mpt.MESH_OUTER_EYE_CORNERS)
    assert 30 < np.linalg.norm(right - left) < 90 and right[0] < left[0]  # the subject's right eye is on our left
    assert mesh.evaluate({"a": face}, {"a": face})["NME"] == 0

    pose = mpt.MediaPipePose("mp-pose")
    (person,) = pose.predict([astronaut])
    assert len(person["points"]) == 33
    nose = person["points"][0]
    assert box_iou([nose[0] - 1, nose[1] - 1, 2, 2], ASTRONAUT_FACE) > 0 and nose[2] > 0.9  # the nose, on the face
    assert pose.evaluate({"a": person}, {"a": person})["PCK"] == 1.0

    seg = mpt.MediaPipeSelfieSegmentation("mp-selfie")
    (pred,) = seg.predict([astronaut])
    mask = read_prediction(pred)
    assert mask.shape == astronaut.shape[:2] and set(np.unique(mask)) <= {0, 1}
    assert mask[110, 220] == 1 and 0.3 < mask.mean() < 0.8  # the face is person; about half the picture
    assert seg.evaluate({"a": pred}, {"a": pred}) == {"IoU": 1.0, "mIoU": 1.0, "pixel_acc": 1.0}
    for task in (det, mesh, pose, seg):
        json.dumps(task.predict([astronaut]), allow_nan=False)
        assert task.versions()["mediapipe"] == "0.10.21"


@needs_mediapipe
def test_jpeg_sweep_through_the_cli(tmp_path, astronaut):
    """``python -m bench run task=mediapipe-face-detection``: AP50 per rate point, fidelity protocol."""
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    results = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "bench", "run", "method=jpeg", "dataset=folder", f"dataset.root={folder}",
        "method.rates=[5,90]", "task=mediapipe-face-detection", f"results_dir={results}", "progress=false",
        "workers=2",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(Path(results, "folder-faces", "jpeg.json").read_text())
    res, meta = doc["results"], doc["meta"]["tasks"]["mediapipe-face-detection"]
    assert meta["protocol"] == "fidelity" and meta["failures"] == 0 and meta["versions"]["mediapipe"] == "0.10.21"
    assert res["mediapipe-face-detection/n"] == [1, 1]
    assert res["mediapipe-face-detection/AP50"][1] == 1.0 and res["mediapipe-face-detection/recall50"][1] == 1.0
    assert res["bpp@mediapipe-face-detection"] == res["bpp"]  # SBAR: the task is charged the whole stream
    assert "mediapipe-face-detection/AP50" in done.stdout


@needs_mediapipe
def test_all_four_tasks_in_one_sweep(tmp_path, astronaut):
    from bench.datasets.folder import ImageFolder
    from bench.methods.codecs.pillow import PillowCodec
    from bench.running.evaluation import evaluate_task
    from bench.running.runner import TaskLogs, run_sweep
    from bench.running.store import RunStore

    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    dataset = ImageFolder(folder)
    method = PillowCodec("jpeg", [3, 95], "JPEG")
    store = RunStore(tmp_path / "out", dataset.name, method.name, "h")
    tasks = [mpt.MediaPipeFaceMesh("mesh"), mpt.MediaPipePose("pose"), mpt.MediaPipeSelfieSegmentation("selfie")]
    logs = [TaskLogs(t, store.task_log(t.name, "t"), store.reference_log(t.name, "t")) for t in tasks]
    run_sweep(method, dataset, store, workers=2, progress=False, tasks=logs)  # forked workers build their own graphs
    tables = {log.task.name: evaluate_task(log, dataset, dataset.samples(), method.rates)[0] for log in logs}
    nme = tables["mesh"]["mesh/NME"].tolist()
    assert nme[1] < nme[0] and nme[1] < 0.02  # lower is better: q95 is close to the uncompressed mesh
    pck = tables["pose"]["pose/PCK"].tolist()
    assert pck[1] >= pck[0] and pck[1] > 0.9
    iou = tables["selfie"]["selfie/IoU"].tolist()
    assert iou[1] > iou[0] and iou[1] > 0.95
