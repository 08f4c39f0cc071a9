"""facenet-pytorch: MTCNN finds the astronaut and sweeps through the CLI; FaceNet weights fail offline, clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.tasks import facenet
from bench.tasks.base import TaskUnavailable
from bench.tasks.faces import box_iou

WHY = facenet.facenet_problem()
needs_mtcnn = pytest.mark.skipif(WHY is not None, reason=f"MTCNN cannot run here: {WHY}")
#: the astronaut's face in skimage.data.astronaut() (dlib HOG finds it at about x 180, y 60, 90 x 110)
ASTRONAUT_FACE = [175, 60, 95, 115]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


def test_missing_package_names_the_install_commands(monkeypatch):
    real = facenet.importlib.util.find_spec
    monkeypatch.setattr(facenet.importlib.util, "find_spec", lambda n: None if n == "facenet_pytorch" else real(n))
    why = facenet.MTCNNFaceDetection("mtcnn").unavailable_reason()
    assert why == f"mtcnn: facenet-pytorch is not installed ({facenet.INSTALL})"
    assert "pip install --no-deps facenet-pytorch==2.6.0" in why
    with pytest.raises(ValueError, match="thresholds must be three numbers"):
        facenet.MTCNNFaceDetection("mtcnn", thresholds=[0.6, 0.7])


@needs_mtcnn
def test_facenet_weights_fail_offline_with_one_message(tmp_path, monkeypatch, astronaut):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    task = facenet.FacenetEmbedding("facenet-embedding")
    target = tmp_path / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"
    why = task.unavailable_reason()
    assert f"{target} is missing" in why and f"TORCH_HOME={tmp_path / 'torch'}" in why
    assert "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt" in why
    assert "fetch_facenet_weights('vggface2')" in why
    with pytest.raises(TaskUnavailable, match="20180402-114759-vggface2.pt is missing"):
        task.predict([astronaut])  # nothing is downloaded behind the run's back

    # the explicit fetch uses facenet-pytorch's own downloader; offline it is one message naming URL and file
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("facenet_pytorch.models.utils.download.download_url_to_file", offline)
    with pytest.raises(TaskUnavailable, match=r"cannot download https://github.com/.*vggface2.pt to .*URLError"):
        facenet.fetch_facenet_weights("vggface2")
    with pytest.raises(ValueError, match="pretrained must be one of"):
        facenet.FacenetEmbedding("x", pretrained="imagenet")


@needs_mtcnn
def test_mtcnn_finds_the_astronaut(astronaut):
    task = facenet.MTCNNFaceDetection("mtcnn", device="cpu")
    (faces,) = task.predict([astronaut])
    json.dumps(faces, allow_nan=False)
    assert len(faces) == 1 and faces[0]["score"] > 0.99
    x, y, w, h = faces[0]["bbox"]
    assert box_iou(faces[0]["bbox"], ASTRONAUT_FACE) > 0.5
    (right_eye, left_eye, nose, mouth_right, mouth_left) = faces[0]["keypoints"]
    assert right_eye[0] < nose[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < nose[1]
    assert nose[1] < min(mouth_right[1], mouth_left[1]) < y + h
    try:  # the same face as dlib's HOG detector, when dlib is here
        from bench.tasks.faces import DlibFaceDetection

        dlib_task = DlibFaceDetection("dlib")
        if dlib_task.unavailable_reason() is None:
            dlib_box = max(dlib_task.predict([astronaut])[0], key=lambda d: d["score"])["bbox"]
            assert box_iou(faces[0]["bbox"], dlib_box) > 0.5
    except ImportError:
        pass
    ref = task.reference_from_prediction(faces)
    assert task.evaluate({"a": faces}, {"a": ref}) == {"AP50": 1.0, "recall50": 1.0}
    assert task.predict([np.zeros((64, 64, 3), np.uint8)]) == [[]]  # no face: an empty list
    import pickle

    assert pickle.loads(pickle.dumps(task))._mtcnn is None  # the network is rebuilt where it runs


@needs_mtcnn
def test_jpeg_sweep_through_the_cli(tmp_path, astronaut):
    """``python -m bench run task=mtcnn``: AP50 and recall50 per rate point under the fidelity protocol."""
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    results = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "bench", "run", "method=jpeg", "dataset=folder", f"dataset.root={folder}",
        "method.rates=[5,90]", "task=mtcnn", "task.device=cpu", f"results_dir={results}", "progress=false",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(Path(results, "folder-faces", "jpeg.json").read_text())
    res, meta = doc["results"], doc["meta"]["tasks"]["mtcnn"]
    assert meta["protocol"] == "fidelity" and meta["failures"] == 0 and meta["versions"]["facenet-pytorch"] == "2.6.0"
    assert res["mtcnn/n"] == [1, 1] and res["mtcnn/AP50"][1] == 1.0 and res["mtcnn/recall50"][1] == 1.0
    assert res["bpp@mtcnn"] == res["bpp"]
