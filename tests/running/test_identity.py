"""A row's identity: change one thing that decides a number, rerun into the same folder, get a fresh run's numbers.

Each test measures once, changes one input (a sample's pixels, a weight file, a library version, a config
value, a task's precision), runs again into the same results folder and checks that (a) the numbers equal
those of a fresh run on the new inputs, and (b) the rows measured before are still in the log, untouched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from bench.running import keys
from bench.running.app import run_job

KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")


def run(results: Path, *overrides: str) -> dict:
    """``python -m bench run`` in this process; the results JSON."""
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"results_dir={results}", "progress=false", "workers=1"])
    out = run_job(cfg)
    return json.loads(Path(out["json"]).read_text())


def numbers(doc: dict) -> dict:
    return {k: doc["results"][k] for k in KEYS}


def row_logs(results: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in results.rglob("rows.jsonl")}


def untouched(before: dict[Path, str], results: Path) -> bool:
    """Every rows log measured before is still there and still starts with what it held (appends only)."""
    now = row_logs(results)
    return all(p in now and now[p].startswith(text) for p, text in before.items())


@pytest.fixture()
def two_folders(tmp_path: Path, photos: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Folders A and B, both named ``images``, holding the same file names; B's pictures are A's at half size."""
    a, b = tmp_path / "A" / "images", tmp_path / "B" / "images"
    for folder, step in ((a, 1), (b, 2)):
        folder.mkdir(parents=True)
        for name in ("astronaut", "coffee"):
            Image.fromarray(np.ascontiguousarray(photos[name][::step, ::step])).save(folder / f"{name}.png")
    return a, b


def test_same_file_names_new_pixels_are_measured_again(tmp_path, two_folders, caplog):
    a, b = two_folders
    shared = tmp_path / "shared"
    args = ("method=jpeg", "dataset=folder", "method.rates=[50]")
    first = run(shared, *args, f"dataset.root={a}")
    before = row_logs(shared)
    with caplog.at_level(logging.INFO, logger="bench"):
        second = run(shared, *args, f"dataset.root={b}")
    fresh = run(tmp_path / "fresh", *args, f"dataset.root={b}")
    assert numbers(second) == numbers(fresh) and numbers(second) != numbers(first)
    assert untouched(before, shared)  # A's rows are where they were
    assert "2 rows in" in caplog.text and "other sample content or weights" in caplog.text
    # the uncompressed predictions are keyed by content too: a task on B never reads A's
    assert second["meta"]["sample_set"]["digest"] != first["meta"]["sample_set"]["digest"]


def test_a_dataset_option_starts_a_new_key_and_says_what_differs(tmp_path, two_folders, caplog):
    a, _ = two_folders
    args = ("method=jpeg", "dataset=folder", f"dataset.root={a}", "method.rates=[50]")
    first = run(tmp_path / "r", *args)
    with caplog.at_level(logging.INFO, logger="bench"):
        second = run(tmp_path / "r", *args, "dataset.recursive=false")
    assert first["meta"]["config_hash"] != second["meta"]["config_hash"]
    assert "a previous run with another identity" in caplog.text and "dataset.recursive" in caplog.text


def test_a_library_upgrade_starts_a_new_key(tmp_path, two_folders, monkeypatch, caplog):
    a, _ = two_folders
    args = ("method=jpeg", "dataset=folder", f"dataset.root={a}", "method.rates=[50]")
    first = run(tmp_path / "r", *args)
    import PIL

    monkeypatch.setattr(PIL, "__version__", "99.0")  # what the JPEG codec reports as its library's version
    with caplog.at_level(logging.INFO, logger="bench"):
        second = run(tmp_path / "r", *args)
    assert first["meta"]["config_hash"] != second["meta"]["config_hash"]
    assert "versions.pillow" in caplog.text
    assert numbers(first) == numbers(second)  # measured again (same Pillow really), into its own folder
    assert len(list((tmp_path / "r" / "folder-images" / "jpeg").glob("*/rows.jsonl"))) == 2


def _tiny_codec(path: Path, seed: int) -> Path:
    torch = pytest.importorskip("torch")
    from compressai.zoo.image import model_architectures

    torch.manual_seed(seed)
    net = model_architectures["bmshj2018-factorized"](16, 24)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(20)  # a latent that carries the image (untrained: |y| < 0.5 otherwise)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def test_new_weights_at_the_same_path_are_never_mixed_with_old_rows_or_cached_bytes(tmp_path, two_folders):
    a, _ = two_folders
    ckpt = tmp_path / "weights" / "q1.pth"
    args = (
        "method=bmshj2018-factorized",
        f"method.checkpoints={ckpt.parent}",  # a folder: the run key stays, each row records the file's SHA-256
        "method.checkpoint_pattern='q{quality}.pth'",
        "method.rates=[1]",
        "dataset=folder",
        f"dataset.root={a}",
        "device=cpu",
        f"cache_dir={tmp_path / 'cache'}",
    )
    _tiny_codec(ckpt, seed=1)
    first = run(tmp_path / "shared", *args)
    before = row_logs(tmp_path / "shared")
    _tiny_codec(ckpt, seed=2)  # other weights, same file name
    second = run(tmp_path / "shared", *args, "resume=false")  # resume=false: the cache alone could serve stale bytes
    fresh = run(tmp_path / "fresh", *args)
    assert numbers(second) == numbers(fresh) and numbers(second) != numbers(first)
    assert untouched(before, tmp_path / "shared")
    assert second["meta"]["config_hash"] == first["meta"]["config_hash"]  # same rows log, other rows counted
    (entry,) = second["meta"]["weights"]
    assert entry["role"] == "codec" and entry["sha256"] == keys.file_sha256(ckpt) and entry["origin"] == "unknown"
    assert len(list((tmp_path / "cache").rglob("*"))) > len(list((tmp_path / "cache").glob("*")))  # entries kept


def test_a_task_on_another_precision_or_device_gets_its_own_rows():
    class Network:  # what task_identity reads of a task besides its config
        def weight_files(self) -> dict:
            return {}

        def versions(self) -> dict:
            return {"onnxruntime": "1"}

    task = Network()
    base = {"name": "yolox-nano", "model": "missing.onnx", "device": "cpu", "autocast": False}
    auto = keys.task_identity({**base, "device": "auto"}, task)
    assert keys.key_of(auto) == keys.key_of(keys.task_identity(base, task))  # auto is resolved (no GPU here)
    bf16 = keys.task_identity({**base, "autocast": True}, task)
    assert bf16["precision"] == "bfloat16" and keys.key_of(bf16) != keys.key_of(keys.task_identity(base, task))
    cuda = keys.task_identity({**base, "device": "cuda", "autocast": True}, task)
    assert cuda["precision"] == "float16" and keys.key_of(cuda) != keys.key_of(bf16)


def test_paths_count_by_content_not_location(tmp_path):
    f1, f2 = tmp_path / "x" / "w.bin", tmp_path / "y" / "w.bin"
    for f in (f1, f2):
        f.parent.mkdir()
        f.write_bytes(b"weights")
    assert keys.portable({"checkpoints": str(f1)}) == keys.portable({"checkpoints": str(f2)})
    f2.write_bytes(b"other weights")
    assert keys.portable({"checkpoints": str(f1)}) != keys.portable({"checkpoints": str(f2)})
    assert keys.portable({"root": str(tmp_path)}) == {"root": "<folder>"}


def test_shipped_weights_put_their_training_record_in_meta(tmp_path, photos):
    pytest.importorskip("compressai")
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(photos["astronaut"][::2, ::2]).save(folder / "a.png")
    doc = run(
        tmp_path / "r",
        "method=bmshj2018-hyperprior-ours",
        "method.rates=[1]",
        "dataset=folder",
        f"dataset.root={folder}",
        "device=cpu",
    )
    (entry,) = doc["meta"]["weights"]
    sidecar = json.loads(Path(keys_checkpoint("bmshj2018-hyperprior-mse-q1.json")).read_text())
    assert entry["sha256"] == sidecar["sha256"] and entry["origin"] == "local"
    assert entry["total_steps"] == sidecar["total_steps"] and entry["validation"] == sidecar["validation"]


def keys_checkpoint(name: str) -> Path:
    from bench.resolvers import checkpoints_root

    return Path(checkpoints_root()) / "bmshj2018-hyperprior-ours" / name


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes through /proc (Linux)")
def test_a_killed_run_leaves_no_worker_behind(tmp_path, photo_folder):
    """SIGKILL the parent of a sweep with two workers: the workers exit with it."""
    (tmp_path / "sleepy_codec.py").write_text(
        "import time\n"
        "from bench.methods.codecs.pillow import PillowCodec\n\n\n"
        "class SleepyJPEG(PillowCodec):\n"
        "    def encode(self, image, rate):\n"
        "        time.sleep(2)\n"
        "        return super().encode(image, rate)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "method=jpeg", "method._target_=sleepy_codec.SleepyJPEG",
         "method.rates=[10,20,30,40,50,60]", "dataset=folder", f"dataset.root={photo_folder}", "workers=2",
         f"results_dir={tmp_path / 'out'}", "progress=false"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            workers |= _children(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "the sweep never started its workers"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
