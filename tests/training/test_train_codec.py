"""Training, resuming and shipping our own CompressAI codecs, on tiny models and scikit-image photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

from bench.io.digests import file_sha256 as sha256_of  # noqa: E402
from bench.methods.base import MethodUnavailable  # noqa: E402
from bench.methods.learned.compressai import CompressAICodec, to_tensor, to_uint8  # noqa: E402
from bench.metrics.image import psnr  # noqa: E402
from bench.resolvers import project_checkpoints  # noqa: E402
from bench.training.codec import Trainer, TrainError, build_model, load_config, read_checkpoint  # noqa: E402
from bench.training.codec_cli import main  # noqa: E402
from bench.training.codec_export import export_run  # noqa: E402
from bench.training.data import CropSampler, scan_images  # noqa: E402
from bench.training.weights import ChecksumMismatch as ChecksumError  # noqa: E402
from bench.training.weights import read_state_dict  # noqa: E402

TINY = [
    "N=8",
    "M=12",
    "patch_size=64",
    "batch_size=2",
    "log_every=0",
    "val_every_minutes=0",
    "checkpoint_every_minutes=0",
    "lr=1e-3",
    "threads=1",
]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """threads=1 keeps these tiny runs fast on a busy machine; the rest of the session keeps its setting."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """Three real photos to train on, one to validate on (scikit-image ships them)."""
    root = tmp_path_factory.mktemp("images")
    train, val = root / "train", root / "val"
    (train / "sub").mkdir(parents=True)
    val.mkdir()
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(train / "astronaut.png")
    Image.fromarray(skdata.coffee()[::3, ::3]).save(train / "sub" / "coffee.png")
    Image.fromarray(skdata.chelsea()[::2, ::2]).save(train / "chelsea.jpg", quality=95)
    Image.fromarray(skdata.rocket()[:96, :128]).save(val / "rocket.png")
    return train, val


def _cfg(tmp_path: Path, image_dirs: tuple[Path, Path], *extra: str) -> dict:
    train, val = image_dirs
    return load_config([*TINY, f"data=[{train}]", f"val_data=[{val}]", f"out_dir={tmp_path / 'run'}", *extra])


def _eval_loss(trainer: Trainer, x: torch.Tensor) -> float:
    trainer.net.eval()
    with torch.no_grad():
        loss = trainer.criterion(trainer.net(x), x)["loss"].item()
    trainer.net.train()
    return loss


def test_config_fills_the_zoo_lambda_and_rejects_bad_values(tmp_path, image_dirs):
    assert _cfg(tmp_path, image_dirs, "quality=3")["lmbda"] == 0.0067
    assert _cfg(tmp_path, image_dirs, "lmbda=0.02")["lmbda"] == 0.02
    with pytest.raises(TrainError, match="patch_size=100 must be a multiple of 64"):
        _cfg(tmp_path, image_dirs, "patch_size=100")
    with pytest.raises(TrainError, match="not a CompressAI zoo image architecture"):
        _cfg(tmp_path, image_dirs, "model=nonsense")
    with pytest.raises(TrainError, match="bad train-codec arguments"):
        _cfg(tmp_path, image_dirs, "no_such_key=1")


def test_zoo_quality_sets_n_and_m(tmp_path, image_dirs):
    net = build_model(_cfg(tmp_path, image_dirs, "N=null", "M=null", "quality=6"))
    assert net.g_a[0].weight.shape[0] == 192 and net.g_a[-1].weight.shape[0] == 320


def test_a_few_steps_lower_the_loss(tmp_path, image_dirs):
    trainer = Trainer(_cfg(tmp_path, image_dirs, "steps=25", "val_data=[]"))
    trainer.prepare_data()
    x = trainer.sampler.batch(0)
    before = _eval_loss(trainer, x)
    trainer.run()
    assert trainer.step == 25
    assert _eval_loss(trainer, x) < 0.8 * before


def test_crops_depend_only_on_seed_and_step(image_dirs):
    files = sorted(image_dirs[0].rglob("*.*"))
    a = CropSampler(files, 64, 3, seed=1)
    b = CropSampler(files, 64, 3, seed=1)
    assert a.batch(5).shape == (3, 3, 64, 64)
    assert torch.equal(a.batch(5), b.batch(5)) and torch.equal(b.batch(2), a.batch(2))
    assert not torch.equal(a.batch(5), CropSampler(files, 64, 3, seed=2).batch(5))


def test_resumed_run_equals_uninterrupted_run(tmp_path, image_dirs):
    """Validation (update + real coding + plateau scheduler) at step 3 sits between the two halves."""
    extra = ("val_every_steps=3", "checkpoint_every_steps=2")
    whole = _cfg(tmp_path / "whole", image_dirs, "steps=6", *extra)
    Trainer(whole).run()
    split_first = _cfg(tmp_path / "split", image_dirs, "steps=3", *extra)
    Trainer(split_first).run()
    assert read_checkpoint(tmp_path / "split" / "run" / "last.pt")["step"] == 3
    resumed = Trainer(_cfg(tmp_path / "split", image_dirs, "steps=6", *extra))
    resumed.run()
    a = read_checkpoint(tmp_path / "whole" / "run" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "run" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    history = [json.loads(line) for line in (tmp_path / "whole" / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6]
    assert 0 < history[-1]["val_bpp"] and 5 < history[-1]["val_psnr"] < 60


def test_resume_refuses_a_different_lambda(tmp_path, image_dirs):
    Trainer(_cfg(tmp_path, image_dirs, "steps=1")).run()
    with pytest.raises(TrainError, match=r"lmbda: checkpoint 0.0018, now 0.01"):
        Trainer(_cfg(tmp_path, image_dirs, "steps=2", "lmbda=0.01")).run()


def test_corrupt_and_small_training_images_are_reported_by_name(tmp_path, image_dirs, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in image_dirs[0].rglob("*.png"):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    Image.fromarray(np.zeros((40, 90, 3), np.uint8)).save(folder / "tiny.png")
    with caplog.at_level(logging.WARNING, logger="bench.train"):
        report = scan_images(sorted(folder.iterdir()), min_size=64)
    assert report.summary() == {"usable": 2, "corrupt": 1, "too_small": 1}
    assert str(folder / "broken.jpg") in report.corrupt
    assert "broken.jpg" in caplog.text and "tiny.png" in caplog.text and "smaller than the 64 crop" in caplog.text
    trainer = Trainer(_cfg(tmp_path, (folder, image_dirs[1]), "steps=1"))
    trainer.run()
    assert trainer.data_summary["train"] == {"usable": 2, "corrupt": 1, "too_small": 1}


def test_empty_training_folder_is_a_clear_error(tmp_path, image_dirs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="holds no images"):
        Trainer(_cfg(tmp_path, (tmp_path / "empty", image_dirs[1]), "steps=1")).run()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, image_dirs) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("export")
    Trainer(_cfg(tmp, image_dirs, "steps=4", "val_every_steps=4", "quality=2")).run()
    weights, sidecar = export_run(tmp / "run", "last", tmp / "weights")
    return tmp / "run", weights, sidecar


def test_export_writes_fp16_weights_with_tables_and_a_sidecar(exported):
    run_dir, weights, sidecar = exported
    assert weights.name == "bmshj2018-hyperprior-mse-q2.pth"
    state = torch.load(weights, weights_only=True)
    assert state["g_a.0.weight"].dtype == torch.float16
    cdf = state["entropy_bottleneck._quantized_cdf"]
    assert cdf.dtype == torch.int32 and cdf.numel() > 0
    assert state["gaussian_conditional.scale_table"].dtype == torch.float32
    meta = json.loads(sidecar.read_text())
    assert meta["sha256"] == sha256_of(weights) and meta["bytes"] == weights.stat().st_size
    assert (meta["arch"], meta["quality"], meta["lmbda"], meta["steps"], meta["N"], meta["M"]) == (
        "bmshj2018-hyperprior",
        2,
        0.0035,
        4,
        8,
        12,
    )
    assert meta["validation"]["step"] == 4 and meta["validation"]["val_bpp"] > 0
    assert meta["training"]["data"]["train"]["usable"] == 3


def test_exported_weights_decode_in_the_harness_as_in_memory(exported):
    """The codec's bytes and pixels equal compress/decompress of the same (fp16-rounded) model."""
    _, weights, _ = exported
    image = skdata.coffee()[:128, :192]
    codec = CompressAICodec("ours", rates=[2], arch="bmshj2018-hyperprior", checkpoints={2: weights})
    bitstream = codec.encode(image, 2)
    decoded = codec.decode(bitstream)
    assert bitstream.num_bytes() > 0 and decoded.shape == image.shape

    from compressai.zoo.image import model_architectures

    state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(weights).items()}
    net = model_architectures["bmshj2018-hyperprior"].from_state_dict(state).eval()
    with torch.inference_mode():
        out = net.compress(to_tensor(image))
        reference = to_uint8(net.decompress(out["strings"], out["shape"])["x_hat"])
    assert bitstream.streams["y"] == b"".join(out["strings"][0])
    assert bitstream.streams["z"] == b"".join(out["strings"][1])
    np.testing.assert_array_equal(decoded, reference)

    again = CompressAICodec("ours", rates=[2], arch="bmshj2018-hyperprior", checkpoints={2: weights})
    assert again.encode(image, 2).streams == bitstream.streams
    np.testing.assert_array_equal(again.decode(bitstream), decoded)


def test_checksum_mismatch_is_a_clear_error(exported, tmp_path):
    _, weights, sidecar = exported
    bad = tmp_path / weights.name
    corrupted = bytearray(weights.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    bad.write_bytes(bytes(corrupted))
    (tmp_path / sidecar.name).write_text(sidecar.read_text())
    with pytest.raises(ChecksumError, match=r"does not match .* in bmshj2018-hyperprior-mse-q2.json"):
        read_state_dict(bad)
    codec = CompressAICodec("ours", rates=[2], arch="bmshj2018-hyperprior", checkpoints={2: bad})
    with pytest.raises(MethodUnavailable, match=r"quality 2: .*SHA-256 .* does not match"):
        codec.encode(skdata.coffee()[:64, :64], 2)


def test_cli_export_needs_a_run_dir(capsys):
    assert main(["export", "checkpoint=best"]) == 2
    assert "export needs run_dir=DIR" in capsys.readouterr().err
    assert main(["export", "run_dir=/nonexistent/run"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_fetch_checks_released_files_and_says_what_to_do_without_a_release(exported, tmp_path):
    from bench.fetch import FetchError
    from bench.training.weights import fetch_release

    _, weights, sidecar = exported
    assert fetch_release([weights], None) == [weights]
    (tmp_path / sidecar.name).write_text(sidecar.read_text())
    with pytest.raises(FetchError, match=r"q2.pth is missing and no release_url is configured"):
        fetch_release([tmp_path / weights.name], None)
    with pytest.raises(FetchError, match=r"q3.json: no sidecar"):
        fetch_release([tmp_path / "bmshj2018-hyperprior-mse-q3.pth"], "https://example.invalid/releases")


@pytest.mark.slow  # a training run signalled and resumed
def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path, image_dirs):
    import signal
    import subprocess
    import sys
    import time

    train, val = image_dirs
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", "train-codec", *TINY, "log_every=1", "steps=100000",
           f"data=[{train}]", f"val_data=[{val}]", f"out_dir={out}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "train.log").is_file() and "step 3:" in (out / "train.log").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    step = read_checkpoint(out / "last.pt")["step"]
    assert 3 <= step < 100000
    Trainer(_cfg(tmp_path, image_dirs, f"steps={step + 1}")).run()
    assert read_checkpoint(out / "last.pt")["step"] == step + 1


def test_init_from_an_exported_file_starts_from_its_weights(exported, tmp_path, image_dirs):
    _, weights, _ = exported
    trainer = Trainer(_cfg(tmp_path, image_dirs, "quality=2", f"init_from={weights}"))
    trainer.resume_or_init()
    shipped = read_state_dict(weights)
    for key, value in trainer.net.state_dict().items():
        assert torch.equal(value, shipped[key].to(value.dtype)), key


def test_a_chain_of_init_from_runs_ships_its_whole_training_history(exported, tmp_path, image_dirs):
    """q3 from a q2 run.pt that came from an exported file: the sidecar names each start and sums the steps."""
    _, weights, sidecar = exported
    first_steps = json.loads(sidecar.read_text())["steps"]
    Trainer(_cfg(tmp_path / "a", image_dirs, "quality=2", "steps=2", f"init_from={weights}")).run()
    Trainer(
        _cfg(tmp_path / "b", image_dirs, "quality=3", "steps=3", f"init_from={tmp_path / 'a' / 'run' / 'last.pt'}")
    ).run()
    _, side = export_run(tmp_path / "b" / "run", "last", tmp_path / "weights")
    meta = json.loads(side.read_text())
    assert meta["steps"] == 3 and meta["total_steps"] == 3 + 2 + first_steps
    start = meta["training"]["init_from"]
    assert start == {
        "file": "last.pt",
        "arch": "bmshj2018-hyperprior",
        "quality": 2,
        "lmbda": 0.0035,
        "steps": 2,
        "total_steps": 2 + first_steps,
    }
    assert json.loads(sidecar.read_text())["training"]["init_from"] is None


def test_the_committed_weights_match_their_sidecars_and_code_a_photograph() -> None:
    """What a fresh clone relies on: the project's own hyperprior qualities load, check out, and compress,
    each at a higher rate and quality than the one below it."""
    from bench.training.codec import ZOO_LAMBDAS

    folder = project_checkpoints() / "bmshj2018-hyperprior-ours"
    qualities = sorted(int(p.stem.rsplit("q", 1)[1]) for p in folder.glob("bmshj2018-hyperprior-mse-q*.pth"))
    assert qualities[0] == 1, qualities
    for q in qualities:
        weights = folder / f"bmshj2018-hyperprior-mse-q{q}.pth"
        sidecar = json.loads(weights.with_suffix(".json").read_text())
        assert sidecar["sha256"] == sha256_of(weights), weights
        assert sidecar["quality"] == q and sidecar["lmbda"] == ZOO_LAMBDAS[q], sidecar
    codec = CompressAICodec(
        name="bmshj2018-hyperprior-ours",
        arch="bmshj2018-hyperprior",
        metric="mse",
        rates=qualities,
        checkpoints=folder,
        checkpoint_pattern="{arch}-{metric}-q{quality}.pth",
        device="cpu",
    )
    assert codec.unavailable_reason() is None
    image = np.ascontiguousarray(skdata.astronaut()[::2, ::2])
    points = []
    for q in qualities:
        written = codec.encode(image, q)
        decoded = codec.decode(written)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        assert np.array_equal(decoded, codec.decode(written))  # deterministic decoding
        points.append((written.bpp(), psnr(decoded, image)))
    # trained weights, not a random init: q1 is a low-rate code of a real photograph (0.26 bpp, 22.3 dB when
    # first committed), and each higher quality spends more bits for a better picture
    assert 0.05 < points[0][0] < 0.6 and 20.0 < points[0][1] < 30.0
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in zip(points, points[1:])), points
