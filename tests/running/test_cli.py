"""The command line end to end, as a user runs it, from a directory that is not the checkout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import bench

from bench.io.images import read_rgb8
from bench.metrics.image import psnr


def test_run_on_a_folder_writes_compressai_format_json(tmp_path, photo_folder):
    res = bench(
        "run",
        "method=jpeg",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        "method.rates=[10,50,90]",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out" / "folder-images" / "jpeg.json").read_text())
    assert doc["name"] == "jpeg"
    results = doc["results"]
    assert results["rate"] == [10, 50, 90]
    assert set(results) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert results["bpp"] == sorted(results["bpp"]) and results["psnr-rgb"] == sorted(results["psnr-rgb"])
    meta = doc["meta"]
    assert meta["bpp_source"] == "bitstream" and meta["family"] == "SBAR" and meta["samples"] == 3
    assert meta["config"]["method"]["format"] == "JPEG" and "pillow" in meta["provenance"]["versions"]
    # the printed table is the aggregate of what was measured
    assert "psnr-rgb" in res.stdout and "bpp" in res.stdout
    # chelsea (211x297) is too small for MS-SSIM: its rows say so, the mean uses the others
    rows = [json.loads(x) for x in (tmp_path / "out" / meta["rows"]).read_text().splitlines()]
    chelsea = [r for r in rows if r["sample"] == "chelsea.png"]
    assert all("MS-SSIM needs" in r.get("notes", "") for r in chelsea) or all(
        r["ms-ssim-rgb"] == r["ms-ssim-rgb"] for r in chelsea
    )
    # an independent PSNR of one row
    row = next(r for r in rows if r["sample"] == "coffee.png" and r["rate"] == 50)
    import io

    from PIL import Image

    original = read_rgb8(photo_folder / "coffee.png")
    buf = io.BytesIO()
    Image.fromarray(original).save(buf, format="JPEG", quality=50)
    decoded = read_rgb8_bytes(buf.getvalue())
    assert row["psnr-rgb"] == pytest.approx(psnr(decoded, original), rel=1e-12)

    # a second run resumes: nothing is measured again
    again = bench(
        "run",
        "method=jpeg",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        "method.rates=[10,50,90]",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert again.returncode == 0 and "nothing to do" in again.stderr + again.stdout


def read_rgb8_bytes(data: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_default_run_uses_package_sample_images(tmp_path):
    res = bench("run", "method.rates=[30,80]", f"results_dir={tmp_path}", "progress=false", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "samples" / "jpeg.json").read_text())
    assert doc["meta"]["samples"] == 6 and len(doc["results"]["bpp"]) == 2


def test_missing_dataset_is_one_clear_error(tmp_path):
    res = bench("run", "dataset=kodak", f"data_root={tmp_path / 'nowhere'}", f"results_dir={tmp_path}", cwd=tmp_path)
    assert res.returncode == 2
    assert "python -m bench fetch kodak" in res.stderr and "Traceback" not in res.stderr


def test_list_shows_methods_and_datasets(tmp_path):
    res = bench("list", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "jpeg" in res.stdout and "SBAR" in res.stdout and "samples" in res.stdout
    assert "kodak" in res.stdout and "fetch kodak" in res.stdout  # not downloaded here: says how


def test_fetch_offline_is_one_clear_message(tmp_path):
    env = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    res = bench("fetch", "kodak", "--root", str(tmp_path / "kodak"), cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2
    assert "cannot download https://r0k.us" in res.stderr and "Traceback" not in res.stderr


def test_report_writes_table_and_plots(tmp_path, photo_folder):
    out = tmp_path / "res"
    for method in ("jpeg", "webp"):
        res = bench(
            "run",
            f"method={method}",
            "dataset=folder",
            f"dataset.root={photo_folder}",
            "method.rates=[20,60]",
            f"results_dir={out}",
            "progress=false",
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
    res = bench("report", "--results", str(out), "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "reports" / "folder-images" / "rd-psnr-rgb.png").stat().st_size > 1000
    assert "webp" in res.stdout and "jpeg" in res.stdout


def test_same_numbers_as_compressai_bench(tmp_path, photo_folder):
    """CompressAI's own benchmark tool on the same images gives the same bpp, PSNR and MS-SSIM."""
    pytest.importorskip("compressai")
    big = tmp_path / "big"
    big.mkdir()
    for name in ("astronaut.png", "coffee.png"):  # MS-SSIM needs > 160 px
        (big / name).write_bytes((photo_folder / name).read_bytes())
    ref = subprocess.run(
        [sys.executable, "-m", "compressai.utils.bench", "jpeg", str(big), "-q", "10,40,90"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ref.returncode == 0, ref.stderr
    expected = json.loads(ref.stdout[ref.stdout.index("{") :])["results"]
    res = bench(
        "run",
        "method=jpeg",
        "dataset=folder",
        f"dataset.root={big}",
        "method.rates=[10,40,90]",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    ours = json.loads((tmp_path / "out" / "folder-big" / "jpeg.json").read_text())["results"]
    assert ours["bpp"] == pytest.approx(expected["bpp"], rel=1e-6)
    assert ours["psnr-rgb"] == pytest.approx(expected["psnr-rgb"], rel=1e-6)
    assert ours["ms-ssim-rgb"] == pytest.approx(expected["ms-ssim-rgb"], rel=1e-5)


def test_learned_codec_from_a_local_checkpoint_end_to_end(tmp_path, photo_folder):
    """A seeded CompressAI model through the whole CLI: real bytes, bpp includes its header."""
    torch = pytest.importorskip("torch")
    from compressai.zoo.image import model_architectures

    torch.manual_seed(0)
    net = model_architectures["bmshj2018-factorized"](128, 192)
    ckpt = tmp_path / "q1.pth"
    torch.save(net.state_dict(), ckpt)
    res = bench(
        "run",
        "method=bmshj2018-factorized",
        f"method.checkpoints={{1: {ckpt}}}",
        "method.rates=[1]",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        "device=auto",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out" / "folder-images" / "bmshj2018-factorized.json").read_text())
    assert doc["meta"]["family"] == "SBAR" and doc["meta"]["identity"]["device"]["device"] == "cpu"
    rows = [json.loads(x) for x in (tmp_path / "out" / doc["meta"]["rows"]).read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    for r in rows:
        assert set(r["bytes_by_stream"]) == {"header", "y"}
        assert r["bytes"] == sum(r["bytes_by_stream"].values())
        assert r["bpp"] == r["bytes"] * 8 / (r["height"] * r["width"])


def test_learned_codec_offline_without_weights_is_one_clear_error(tmp_path, photo_folder):
    pytest.importorskip("compressai")
    env = {"TORCH_HOME": str(tmp_path / "torch-home")}
    res = bench(
        "run",
        "method=bmshj2018-hyperprior",
        "method.rates=[1]",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        f"results_dir={tmp_path / 'out'}",
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 2
    assert "cannot run here" in res.stderr and "Traceback" not in res.stderr


def test_fetch_learned_weights_offline_is_one_clear_message(tmp_path):
    pytest.importorskip("compressai")
    env = {
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "no_proxy": "",
        "TORCH_HOME": str(tmp_path / "th"),
    }
    res = bench("fetch", "bmshj2018-factorized", cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2
    assert "cannot download the weights of bmshj2018-factorized" in res.stderr and "Traceback" not in res.stderr


def test_multirun_sweeps_methods_in_parallel_jobs(tmp_path, photo_folder):
    res = bench(
        "run",
        "-m",
        "method=jpeg,webp,avif",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        "method.rates=[20,60]",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "Joblib" in res.stderr + res.stdout
    for method in ("jpeg", "webp", "avif"):
        doc = json.loads((tmp_path / "out" / "folder-images" / f"{method}.json").read_text())
        assert len(doc["results"]["bpp"]) == 2
