"""The sweep: bpp accounting from real bytes, failures recorded, resume, results files."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from bench.datasets.folder import ImageFolder
from bench.methods.base import Bitstream, CodecError, Family, Method
from bench.methods.codecs.pillow import PillowCodec
from bench.metrics import image as M
from bench.running.runner import measure_sample, run_sweep
from bench.running.store import RunStore, aggregate


def test_rows_count_the_bytes_pillow_writes(photo_folder):
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("jpeg", [20, 80], "JPEG")
    sample = dataset.samples()[0]
    rows = measure_sample(method, dataset, sample, [20, 80], ["psnr-rgb", "ms-ssim-rgb"]).human
    image = dataset.load(sample)
    for row, quality in zip(rows, [20, 80]):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)  # what CompressAI's bench does
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert row["error"] is None
        assert row["bytes"] == len(buf.getvalue())
        assert row["bpp"] == len(buf.getvalue()) * 8 / (image.shape[0] * image.shape[1])
        assert row["psnr-rgb"] == pytest.approx(M.psnr(decoded, image), rel=1e-12)
    assert rows[1]["bpp"] > rows[0]["bpp"] and rows[1]["psnr-rgb"] > rows[0]["psnr-rgb"]


class FlakyCodec(Method):
    """Fails on one named sample, stores raw pixels otherwise (a codec under test)."""

    family = Family.SBAR

    def __init__(self, fail_on: str):
        super().__init__("flaky", [1, 2])
        self.fail_on = fail_on
        self.calls = 0

    def encode(self, image, rate):
        self.calls += 1
        if image.shape[0] == self.fail_on_height:
            raise CodecError("boom at this sample")
        return Bitstream({"main": image.tobytes()}, image.shape[0], image.shape[1])

    def decode(self, bitstream, target="human"):
        return np.frombuffer(bitstream.streams["main"], np.uint8).reshape(bitstream.height, bitstream.width, 3)


def test_a_failing_sample_is_recorded_and_the_sweep_goes_on(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = FlakyCodec("chelsea.png")
    method.fail_on_height = 211  # chelsea is cropped to 211 rows by the fixture
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    stats = run_sweep(method, dataset, store, workers=1, progress=False)
    assert stats["measured"] == 6 and stats["failed"] == 2
    table = store.sample_table()
    failed = table[table["error"].notna()]
    assert set(failed["sample"]) == {"chelsea.png"}
    assert failed["error"].str.contains("CodecError: boom").all()
    agg = aggregate(table, method.rates)
    assert agg["n"].tolist() == [2, 2] and agg["n_failed"].tolist() == [1, 1]
    # lossless: rows keep PSNR = inf; the point counts them and averages the others (none here: NaN)
    assert (table.loc[table["error"].isna(), "psnr-rgb"] == float("inf")).all()
    assert agg["n_lossless"].tolist() == [2, 2] and agg["psnr-rgb"].isna().all()

    # resume: only the failed sample is retried
    method.fail_on_height = -1
    method.calls = 0
    stats = run_sweep(method, dataset, store, workers=1, progress=False)
    assert method.calls == 2 and stats["skipped"] == 4


def test_resume_ignores_a_torn_last_line_and_parallel_equals_serial(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("webp", [30, 70], "WEBP")
    serial = RunStore(tmp_path / "serial", dataset.name, method.name, "h")
    run_sweep(method, dataset, serial, workers=1, progress=False)
    parallel = RunStore(tmp_path / "parallel", dataset.name, method.name, "h")
    run_sweep(method, dataset, parallel, workers=2, progress=False)
    cols = ["sample", "rate", "bytes", "psnr-rgb", "ms-ssim-rgb"]
    a = serial.sample_table()[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = parallel.sample_table()[cols].sort_values(cols[:2]).reset_index(drop=True)
    assert a.equals(b)

    # simulate a kill mid-write: keep 3 full lines and half of the 4th
    lines = serial.rows_path.read_text().splitlines(keepends=True)
    serial.rows_path.write_text("".join(lines[:3]) + lines[3][:20])
    assert len(serial.read_rows()) == 3
    stats = run_sweep(method, dataset, serial, workers=1, progress=False)
    assert stats["skipped"] == 3 and stats["measured"] == 3
    c = serial.sample_table()[cols].sort_values(cols[:2]).reset_index(drop=True)
    assert c.equals(a)


def test_unreadable_sample_fails_only_itself(tmp_path, photo_folder):
    (photo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("jpeg", [50], "JPEG")
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    stats = run_sweep(method, dataset, store, workers=2, progress=False)
    assert stats["failed"] == 1 and stats["measured"] == 4
    row = [r for r in store.read_rows() if r["sample"] == "broken.png"][0]
    assert "broken.png" in row["error"] and "ImageError" in row["error"]
    assert json.loads(store.rows_path.read_text().splitlines()[0])  # rows are JSON lines


class CrashingCodec(PillowCodec):
    """Kills its process (as a segfaulting native codec would) on images of one height."""

    def __init__(self, crash_height: int):
        super().__init__("jpeg", [30, 70], "JPEG")
        self.crash_height = crash_height

    def encode(self, image, rate):
        if image.shape[0] == self.crash_height:
            os._exit(3)
        return super().encode(image, rate)


def test_a_worker_that_dies_fails_only_its_sample(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    store = RunStore(tmp_path, dataset.name, "jpeg", "h")
    stats = run_sweep(CrashingCodec(211), dataset, store, workers=2, progress=False)  # chelsea is 211 rows
    table = store.sample_table()
    failed = table[table["error"].notna()]
    assert set(failed["sample"]) == {"chelsea.png"} and stats["failed"] == 2
    assert failed["error"].str.startswith("WorkerCrashed").all()
    assert table[table["error"].isna()]["sample"].nunique() == 2  # the others were measured
    # resume retries only the sample that crashed
    stats = run_sweep(CrashingCodec(-1), dataset, store, workers=2, progress=False)
    assert stats["measured"] == 2 and stats["failed"] == 0 and stats["skipped"] == 4
