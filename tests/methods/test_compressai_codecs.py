"""CompressAI adapter: round trips, the container, weights handling, and agreement
with CompressAI's own ``eval_model`` on the same checkpoint.

All models are seeded random initialisations saved as local checkpoints; no
test downloads weights or touches the network.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import math
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from compressai.ops import compute_padding  # noqa: E402
from compressai.zoo.image import cfgs, model_architectures, model_urls  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

from bench.methods.base import Bitstream, CodecError, Family, MethodUnavailable  # noqa: E402
from bench.methods.learned.compressai import (  # noqa: E402
    QUALITIES,
    CompressAICodec,
    Header,
    pack,
    payload_streams,
    unpack,
)
from bench.metrics import image as M  # noqa: E402

BALLE = ["bmshj2018-factorized", "bmshj2018-hyperprior"]


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients, a texture and noise: content every latent channel sees."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    img = np.stack(
        [xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), 128 + 60 * np.sin(xx / 9) * np.cos(yy / 7)],
        axis=-1,
    )
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def save_random_checkpoint(arch: str, path: Path, channels: tuple[int, ...] | None = None) -> Path:
    """A seeded, randomly initialised model saved as a raw state_dict (what eval_model loads too).

    The last analysis conv is scaled up so the latent is far from all-zero
    symbols and the entropy coder has real work to do.
    """
    torch.manual_seed(0)
    net = model_architectures[arch](*(channels or cfgs[arch][1]))
    with torch.no_grad():
        last_conv = [m for m in net.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last_conv.weight.mul_(4)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def balle_checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    return {arch: save_random_checkpoint(arch, folder / f"{arch}-q1.pth.tar") for arch in BALLE}


@pytest.fixture
def one_thread():
    """eval_model runs with one thread; so do we when comparing with it, bit for bit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def method_for(arch: str, ckpt: Path, **kw) -> CompressAICodec:
    return CompressAICodec(arch, [1], arch=arch, checkpoints={1: str(ckpt)}, **kw)


def decode_in_memory(net, image: np.ndarray) -> tuple[dict, np.ndarray]:
    """compress -> decompress without any serialisation, cropped and rounded as eval_model does."""
    h, w = image.shape[:2]
    pad, unpad = compute_padding(h, w, min_div=64)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    with torch.inference_mode():
        enc = net.compress(torch.nn.functional.pad(x, pad, mode="constant", value=0))
        x_hat = torch.nn.functional.pad(net.decompress(enc["strings"], enc["shape"])["x_hat"], unpad)
    rec = (x_hat[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return enc, rec


@pytest.mark.parametrize("arch", BALLE)
def test_round_trip_odd_size_and_container(arch, balle_checkpoints):
    method = method_for(arch, balle_checkpoints[arch])
    assert method.unavailable_reason() is None
    image = make_image(77, 101)
    bs = method.encode(image, 1)
    names = ["y"] if arch == "bmshj2018-factorized" else ["y", "z"]
    assert list(bs.streams) == ["header", *names]
    assert (bs.height, bs.width) == (77, 101)
    assert payload_streams(bs) == names
    header, used = Header.from_bytes(bs.streams["header"])
    assert used == len(bs.streams["header"]) < 32
    assert (header.quality, header.height, header.width) == (1, 77, 101)
    assert header.shape == ((8, 8) if arch == "bmshj2018-factorized" else (2, 2))  # of 128x128 padded
    assert bs.num_bytes() == len(bs.streams["header"]) + bs.num_bytes(names)

    # what the decoder receives is the bytes alone
    decoded = method.decode(Bitstream(dict(bs.streams), height=bs.height, width=bs.width))
    assert decoded.shape == (77, 101, 3) and decoded.dtype == np.uint8

    # the serialised strings are compressai's, and decode to what the in-memory output decodes to
    enc, rec = decode_in_memory(method.network(1), image)
    assert [bs.streams[n] for n in names] == [s[0] for s in enc["strings"]]
    assert np.array_equal(decoded, rec)

    # one file and back; and a fresh decoder (its own model load) agrees
    assert np.array_equal(method.decode(unpack(pack(bs))), decoded)
    assert np.array_equal(method_for(arch, balle_checkpoints[arch]).decode(bs), decoded)


@pytest.mark.parametrize("arch", BALLE)
def test_smaller_than_stride(arch, balle_checkpoints):
    method = method_for(arch, balle_checkpoints[arch])
    image = make_image(20, 30, seed=3)
    decoded = method.decode(method.encode(image, 1))
    assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8


@pytest.mark.parametrize(
    "arch, channels",
    [("mbt2018-mean", (64, 96)), ("mbt2018", (64, 96)), ("cheng2020-anchor", (64,)), ("cheng2020-attn", (64,))],
)
def test_other_architectures_round_trip(arch, channels, tmp_path):
    ckpt = save_random_checkpoint(arch, tmp_path / "net.pth.tar", channels)
    method = method_for(arch, ckpt)
    image = make_image(40, 70, seed=5)
    bs = method.encode(image, 1)
    assert list(bs.streams) == ["header", "y", "z"]
    decoded = method.decode(bs)
    _, rec = decode_in_memory(method.network(1), image)
    assert decoded.shape == (40, 70, 3) and np.array_equal(decoded, rec)


@pytest.mark.parametrize("arch", BALLE)
def test_matches_compressai_eval_model(arch, balle_checkpoints, tmp_path, one_thread):
    """Same checkpoint, same image: eval_model's bpp (strings only) and PSNR are ours.

    eval_model rounds x_hat to 8 bits before its metrics, as our decoder does,
    but keeps those values in float32 and returns PSNR as a float32: computed
    its way from our uint8 image it is equal; the harness's PSNR (exact integer
    MSE, float64) differs only by that float32 rounding (a few 1e-6 dB).
    """
    from pytorch_msssim import ms_ssim

    image = make_image(177, 229, seed=1)  # MS-SSIM in eval_model needs > 160 px a side
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(image).save(images / "test.png")
    ckpt = balle_checkpoints[arch]
    # compressai's own evaluation, in a subprocess that runs while we code the image
    proc = subprocess.Popen(
        [sys.executable, "-m", "compressai.utils.eval_model", "checkpoint", str(images), "-a", arch, "-p", str(ckpt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        method = method_for(arch, ckpt)
        bs = method.encode(image, 1)
        decoded = method.decode(bs)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    theirs = {k: v[0] for k, v in json.loads(out)["results"].items()}

    payload_bpp = bs.bpp(payload_streams(bs))
    assert payload_bpp == pytest.approx(theirs["bpp"], rel=1e-6, abs=0)
    assert bs.bpp() > payload_bpp  # the header is charged too

    org = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float()
    rec = torch.from_numpy(decoded).permute(2, 0, 1).unsqueeze(0).float()
    psnr_their_way = (20 * math.log10(255) - 10 * torch.log10((org - rec).pow(2).mean())).item()
    assert psnr_their_way == pytest.approx(theirs["psnr-rgb"], rel=1e-6, abs=0)
    assert M.psnr(decoded, image) == pytest.approx(theirs["psnr-rgb"], rel=0, abs=2e-5)
    assert ms_ssim(org, rec, data_range=255).item() == pytest.approx(theirs["ms-ssim-rgb"], rel=1e-6, abs=0)


def test_missing_checkpoint_names_the_file(tmp_path, balle_checkpoints):
    missing = tmp_path / "nowhere" / "q1.pth.tar"
    method = CompressAICodec("m", [1], arch="bmshj2018-hyperprior", checkpoints={1: str(missing)})
    assert str(missing) in method.unavailable_reason()
    with pytest.raises(MethodUnavailable, match="quality 1") as err:
        method.encode(make_image(20, 30), 1)
    assert str(missing) in str(err.value) and "bmshj2018-hyperprior" in str(err.value)

    # a directory with a pattern: the message names the file the pattern gives
    by_dir = CompressAICodec(
        "m", [2], arch="bmshj2018-hyperprior", checkpoints=str(tmp_path), checkpoint_pattern="{arch}-q{quality}.pth"
    )
    with pytest.raises(MethodUnavailable, match="bmshj2018-hyperprior-q2.pth"):
        by_dir.encode(make_image(20, 30), 2)

    # a quality the mapping lacks
    partial = CompressAICodec("m", [1, 2], arch="bmshj2018-hyperprior", checkpoints={1: str(missing)})
    with pytest.raises(MethodUnavailable, match="no checkpoint configured"):
        partial.network(2)


def test_checkpoint_directory_with_zoo_names_and_wrapped_state_dict(tmp_path, balle_checkpoints):
    arch = "bmshj2018-hyperprior"
    zoo_name = Path(model_urls[arch]["mse"][1]).name
    state = torch.load(balle_checkpoints[arch], weights_only=True)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / zoo_name)  # CompressAI's train.py layout
    method = CompressAICodec("m", [1], arch=arch, checkpoints=str(tmp_path))
    assert method.unavailable_reason() is None
    image = make_image(30, 40)
    reference = method_for(arch, balle_checkpoints[arch])
    assert method.encode(image, 1).streams == reference.encode(image, 1).streams


def test_zoo_offline_is_one_clear_error(tmp_path, monkeypatch):
    import compressai.zoo.image as zoo_image

    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(zoo_image, "load_state_dict_from_url", offline)
    method = CompressAICodec("m", [3], arch="bmshj2018-hyperprior")
    url = model_urls["bmshj2018-hyperprior"]["mse"][3]

    reason = method.unavailable_reason()
    assert reason and str(tmp_path / "torch") in reason and url in reason
    assert not calls  # unavailable_reason never tries the network

    with pytest.raises(MethodUnavailable) as err:
        method.encode(make_image(20, 30), 3)
    msg = str(err.value)
    assert calls == [url]
    for part in ("bmshj2018-hyperprior", "quality 3", url, str(tmp_path / "torch"), "checkpoints"):
        assert part in msg, part


def test_zoo_weights_from_the_hub_cache(tmp_path, monkeypatch, balle_checkpoints):
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    arch = "bmshj2018-factorized"
    method = CompressAICodec("m", [1], arch=arch)
    cached = method.zoo_cache_file(1)
    assert cached.parent == tmp_path / "torch" / "hub" / "checkpoints"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(balle_checkpoints[arch].read_bytes())
    assert method.unavailable_reason() is None
    image = make_image(30, 40)
    assert method.encode(image, 1).streams == method_for(arch, balle_checkpoints[arch]).encode(image, 1).streams


def test_malformed_bitstreams_are_codec_errors(balle_checkpoints):
    method = method_for("bmshj2018-hyperprior", balle_checkpoints["bmshj2018-hyperprior"])
    bs = method.encode(make_image(20, 30), 1)
    truncated = Bitstream({**bs.streams, "y": bs.streams["y"][:-1]}, height=20, width=30)
    with pytest.raises(CodecError, match="stream 'y'"):
        method.decode(truncated)
    with pytest.raises(CodecError, match="header says 20x30"):
        method.decode(Bitstream(dict(bs.streams), height=21, width=30))
    with pytest.raises(CodecError, match="no 'header'"):
        method.decode(Bitstream({"y": bs.streams["y"]}, height=20, width=30))
    with pytest.raises(ValueError):
        unpack(pack(bs) + b"\0")


def test_construction_validates_and_loads_nothing():
    with pytest.raises(ValueError, match="qualities 1..6"):
        CompressAICodec("m", [7], arch="cheng2020-anchor")
    with pytest.raises(ValueError, match="unknown CompressAI architecture"):
        CompressAICodec("m", [1], arch="nope")
    with pytest.raises(ValueError, match="metric"):
        CompressAICodec("m", [1], arch="mbt2018", metric="psnr")


def test_configs_instantiate(tmp_path, balle_checkpoints):
    from hydra.utils import instantiate

    folder = importlib.resources.files("bench.conf.method")
    for arch in QUALITIES:
        cfg = OmegaConf.load(str(folder / f"{arch}.yaml"))
        method = instantiate(cfg)
        assert isinstance(method, CompressAICodec)
        assert (method.name, method.arch, method.metric, method.checkpoints) == (arch, arch, "mse", None)
        assert method.rates == list(QUALITIES[arch])
        assert method.family is Family.SBAR and method.uses_torch and method.bpp_source == "bitstream"
        assert not method._models  # nothing loaded at construction

    # a quality -> file mapping given in config (YAML int keys)
    cfg = OmegaConf.load(str(folder / "bmshj2018-factorized.yaml"))
    cfg.rates = [1]
    cfg.checkpoints = {1: str(balle_checkpoints["bmshj2018-factorized"])}
    method = instantiate(cfg)
    assert method.unavailable_reason() is None
    assert method.decode(method.encode(make_image(20, 30), 1)).shape == (20, 30, 3)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_one_pass_scale_indexes_are_compressais_and_code_the_same_bytes(arch):
    """The bucketized ``build_indexes`` gives CompressAI's indexes, table entries themselves included, and
    the network writes the same strings and decodes the same image with it."""
    from compressai.entropy_models import GaussianConditional
    from compressai.zoo.image import model_architectures

    from bench.methods.learned.compressai import one_pass_scale_indexes

    torch.manual_seed(0)
    plain = model_architectures[arch](8, 12).eval()
    plain.update(force=True)
    fast = copy.deepcopy(plain)
    one_pass_scale_indexes(fast)
    gc = fast.gaussian_conditional
    assert not hasattr(gc.build_indexes, "__self__")  # the instance's own function, not the class's method
    scales = torch.cat([torch.rand(4000) * 80, gc.scale_table, gc.scale_table.nextafter(torch.tensor(0.0))])
    scales = scales.view(1, 1, -1, 1)
    assert torch.equal(gc.build_indexes(scales), GaussianConditional.build_indexes(gc, scales))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        theirs, ours = plain.compress(x), fast.compress(x)
        assert theirs["strings"] == ours["strings"]
        assert torch.equal(plain.decompress(**theirs)["x_hat"], fast.decompress(**ours)["x_hat"])


def test_every_loaded_codec_network_builds_indexes_in_one_pass(balle_checkpoints):
    """The codec's own networks (from a file, or installed from memory) carry the one-pass ``build_indexes``."""
    method = method_for("bmshj2018-hyperprior", balle_checkpoints["bmshj2018-hyperprior"])
    assert not hasattr(method.network(1).gaussian_conditional.build_indexes, "__self__")
