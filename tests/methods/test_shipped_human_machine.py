"""Every shipped human-machine checkpoint: the file its sidecar describes, trained on (or started from) the shipped
backbone, listed by its method's config, and real coding with it: bytes -> decode equals the in-memory path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from learned_method_fixtures import one_torch_thread  # noqa: F401 - an autouse fixture

from bench.io.digests import file_sha256
from bench.methods.base import HUMAN, Bitstream
from bench.methods.learned.compressai import to_tensor, to_uint8
from bench.resolvers import project_checkpoints

#: the methods whose trained weights ship under checkpoints/<method>/<task>/rate-<r>/model.pt
HUMAN_MACHINE = ("icmh", "eac", "sicmh", "latent-scalable", "compressed-domain", "feature-stream")
BACKBONE = "bmshj2018-hyperprior-ours"
#: the methods built on the shipped hyperprior (feature-stream sends JPEG beside its features)
ON_THE_BACKBONE = ("icmh", "eac", "sicmh", "latent-scalable", "compressed-domain")


def shipped() -> list[Path]:
    root = project_checkpoints()
    return sorted(p for m in HUMAN_MACHINE for p in (root / m).glob("*/rate-*/model.pt"))


def label(path: Path) -> str:
    return "/".join(path.parts[-4:-1])


def sidecar(weights: Path) -> dict:
    return json.loads(weights.with_suffix(".json").read_text())


@pytest.mark.parametrize("weights", shipped(), ids=label)
def test_a_shipped_module_is_the_file_its_sidecar_describes_on_the_shipped_backbone(weights):
    method, task, rate = weights.parts[-4], weights.parts[-3], int(weights.parts[-2].split("-")[1])
    side = sidecar(weights)
    assert side["sha256"] == file_sha256(weights), weights
    assert side["format"] == "hmc-bench-module/1" and side["origin"] == "local"
    assert side["rate"] == rate and task in side["tasks"]
    assert side["total_steps"] >= sum(side["steps"].values()) > 0 and side["validation"]
    assert side["training"]["device"] == "cpu" and side["training"]["data"]["train_images"] > 0
    starts = [
        side["trained_on"].get("backbone"),
        side["training"].get("init_from"),
        side["training"].get("init_encoder_from"),
    ]
    on_backbone = [s for s in starts if s and s["file"].startswith("bmshj2018-hyperprior")]
    for start in on_backbone:  # the backbone it names is the committed file, byte for byte
        assert start["sha256"] == file_sha256(project_checkpoints() / BACKBONE / start["file"]), start
        assert start["file"].endswith(f"-q{rate}.pth")
    assert bool(on_backbone) == (method in ON_THE_BACKBONE), starts
    assert '"/' not in json.dumps(side)  # no absolute path of the machine that trained it


def compose_method(name: str, task: str, rate: int):
    overrides = [f"method={name}", f"method.rates=[{rate}]"]
    overrides += [f"method.tasks=[{task}]"] if name in ("eac", "icmh") else [f"task={task}"]
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return instantiate(compose("config", overrides=overrides).method)


@pytest.mark.parametrize("name", HUMAN_MACHINE)
def test_every_rate_a_method_config_lists_ships(name):
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"method={name}"])
    rates = list(cfg.method.rates)
    tasks = list(cfg.method.tasks) if name in ("eac", "icmh") else [cfg.method.machine_task.name]
    assert len(rates) >= 3, rates
    for task in tasks:
        for rate in rates:
            assert (project_checkpoints() / name / task / f"rate-{rate}" / "model.pt").is_file(), (name, task, rate)


@pytest.mark.parametrize("name", ("sicmh", "latent-scalable", "compressed-domain", "feature-stream"))
def test_fetch_verifies_the_shipped_modules_against_their_sidecars(name):
    from bench.fetch import fetch

    files = fetch(name)
    assert files and all(f.is_file() and f.is_relative_to(project_checkpoints() / name) for f in files), files


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[120:216, 160:296])  # 96 x 136


def received(written: Bitstream, names: list[str]) -> Bitstream:
    """What a decoder gets: fresh bytes of the streams sent to the target."""
    return Bitstream({n: bytes(written.streams[n]) for n in names}, written.height, written.width)


def padded(image: np.ndarray, min_div: int) -> tuple[torch.Tensor, tuple]:
    pad, unpad = compute_padding(*image.shape[:2], min_div=min_div)
    return F.pad(to_tensor(image), pad), unpad


def needs_task_weights(task: str) -> None:
    if not os.environ.get("HMC_BENCH_WEIGHTS"):
        pytest.skip(f"HMC_BENCH_WEIGHTS is unset: {task}'s weights are a download")


def coding_cases() -> list:
    """Each (method, task)'s lowest rate in the default tests, the other rates in the slow suite; EAC's modules
    are ICMH's files (checkpoints/eac/<task> link to checkpoints/icmh/<task>)."""
    cases = [p for p in shipped() if p.parts[-4] != "eac"]
    first = {p.parent.parent: min(q for q in cases if q.parent.parent == p.parent.parent) for p in cases}
    return [pytest.param(p, id=label(p), marks=() if first[p.parent.parent] == p else pytest.mark.slow) for p in cases]


@pytest.mark.parametrize("weights", coding_cases())
def test_a_shipped_module_codes_and_its_bytes_decode_to_the_in_memory_path(weights, image):
    from bench.methods.human_machine.compressed_domain import latent_from_strings, tap_synthesis

    name, task, rate = weights.parts[-4], weights.parts[-3], int(weights.parts[-2].split("-")[1])
    if name in ("latent-scalable", "compressed-domain", "feature-stream"):
        needs_task_weights(task)  # their networks are built around the task network's cut
    method = compose_method(name, task, rate)
    written = method.encode(image, rate)
    assert all(len(b) > 0 for b in written.streams.values())
    human = method.decode(received(written, method.streams_for(HUMAN, written)), HUMAN)
    assert human.shape == image.shape and human.dtype == np.uint8
    with torch.no_grad():
        if name == "icmh":
            x, unpad = padded(image, 64)
            for target in (HUMAN, task):
                decoded = method.decode(received(written, method.streams_for(target, written)), target)
                expected = to_uint8(F.pad(method.forward_quantized(x, rate, target), unpad))
                np.testing.assert_array_equal(decoded, expected)
        elif name == "sicmh":
            x, unpad = padded(image, method.min_div)
            out = method.network(rate)(x, heads=["segmentation"], fine=True)
            np.testing.assert_array_equal(human, to_uint8(F.pad(out.x_fine, unpad).clamp(0, 1)))
            task_view = method.decode(received(written, method.streams_for(task, written)), task)
            np.testing.assert_array_equal(task_view, to_uint8(F.pad(out.machine["segmentation"], unpad).clamp(0, 1)))
        elif name == "latent-scalable":
            x, unpad = padded(image, method.min_div)
            net = method.network(rate)
            y_hat = torch.round(net.g_a(x))
            _, base = method.decode_latent(received(written, method.streams_for(task, written)), 1)
            assert torch.equal(base, y_hat[:, : method.base_channels])
            np.testing.assert_array_equal(human, to_uint8(F.pad(net.g_s(y_hat).clamp(0, 1), unpad)))
        elif name == "compressed-domain":
            header, strings = method.codec.parse(written)
            net = method.codec.network(rate)
            x, _ = padded(image, 64)
            with tap_synthesis(net, run=False) as tap:
                net(x)
            assert torch.equal(latent_from_strings(net, strings, header.shape), tap.y_hat)
        elif name == "feature-stream":
            net = method.network(rate)
            y_hat, _ = net.entropy_bottleneck(net.g_a(method.features(image)))
            _, decoded = method.decode_features(received(written, ["features"]).streams["features"])
            assert torch.equal(decoded, net.g_s(y_hat))
