"""Latent-space scalable codec (Choi & Bajić), MBHD: bytes per layer, prefix accounting, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from learned_method_fixtures import (  # noqa: F401 - one_torch_thread is an autouse fixture
    fixed_batch,
    module_digests,
    one_torch_thread,
    small_photos,
    tiny_classifier,
    train_briefly,
)
from split_fixtures import tiny_espnet_task, tiny_yolox_task

from bench.methods.base import HUMAN, Bitstream, CodecError, HeadPrediction, MethodUnavailable
from bench.methods.human_machine.latent_scalable import LatentScalable, crop_to_image, task_features
from bench.methods.learned.compressai import to_tensor, to_uint8
from bench.resolvers import project_checkpoints
from bench.running.runner import TaskJob, measure_sample

SPLIT = "features.3"  # MobileNetV3-small: 24 channels at stride 8


@pytest.fixture(scope="module")
def task():
    return tiny_classifier()


def make_method(task, **kw) -> LatentScalable:
    torch.manual_seed(1)
    method = LatentScalable("latent-scalable", [1], machine_task=task, split=SPLIT, N=16, M=24, base_channels=8, **kw)
    method.set_network(1, method.new_network())
    return method


@pytest.fixture(scope="module")
def method(task):
    return make_method(task)


@pytest.fixture(scope="module")
def image(photos):
    return np.ascontiguousarray(photos["astronaut"][100:190, 150:270])  # 90 x 120: padded to 128 x 128


def in_memory_latent(method: LatentScalable, image: np.ndarray) -> torch.Tensor:
    net = method.network(1)
    pad, _ = compute_padding(*image.shape[:2], min_div=64)
    with torch.no_grad():
        return torch.round(net.g_a(F.pad(to_tensor(image), pad)))  # the scale hyperprior rounds y itself


def test_each_layer_is_its_own_stream_of_real_bytes_and_decodes_to_the_in_memory_latent(method, image):
    written = method.encode(image, 1)
    assert list(written.streams) == ["header", "z", "base", "enhancement"]
    assert all(len(b) > 0 for b in written.streams.values())
    y_hat = in_memory_latent(method, image)
    _, base_only = method.decode_latent(Bitstream({n: written.streams[n] for n in ("header", "z", "base")}, 90, 120), 1)
    _, full = method.decode_latent(written, 2)
    assert torch.equal(base_only, y_hat[:, :8])
    assert torch.equal(full, y_hat)

    net = method.network(1)
    _, unpad = compute_padding(90, 120, min_div=64)
    with torch.no_grad():
        expected_image = to_uint8(F.pad(net.g_s(y_hat).clamp(0, 1), unpad))
        hidden = crop_to_image(net.lst.trunk(y_hat[:, :8]), 90, 120, 8, 64)  # the image's own geometry: no resampling
        logits = method.split_network.back(net.lst.tail(hidden), (90, 120))
    np.testing.assert_array_equal(method.decode(written, HUMAN), expected_image)
    decoded = method.decode(written, "cls")
    assert isinstance(decoded, HeadPrediction)
    assert decoded.value == method.split_network.predictions(logits, (90, 120))[0]


def test_the_task_is_charged_the_base_layer_and_the_human_every_layer(method, task, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos)
    sample = dataset.samples()[0]
    result = measure_sample(method, dataset, sample, [1], ["psnr-rgb"], [TaskJob(task, [1])])
    written = method.encode(dataset.load(sample), 1)
    sizes = {n: len(b) for n, b in written.streams.items()}
    (human,) = result.human
    (row,) = result.tasks["cls"]
    assert human["error"] is None and row["error"] is None
    assert human["bytes"] == sum(sizes.values())
    assert row["bytes"] == sizes["header"] + sizes["z"] + sizes["base"] < human["bytes"]
    h, w = dataset.load(sample).shape[:2]
    assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (h * w))
    assert set(row["prediction"]) == {"top5", "scores"}  # the classifier's own format, from the base layer alone
    assert np.isfinite(human["psnr-rgb"])  # scored on the full reconstruction (untrained: low)


def test_the_human_cannot_decode_without_the_enhancement_layer(method, image):
    written = method.encode(image, 1)
    base = Bitstream({n: written.streams[n] for n in ("header", "z", "base")}, 90, 120)
    with pytest.raises(CodecError, match="enhancement"):
        method.decode(base, HUMAN)
    with pytest.raises(CodecError, match="serves targets"):
        method.decode(written, "detection")


def test_bad_configs_and_missing_weights_say_what_is_wrong(task, tmp_path):
    with pytest.raises(ValueError, match="base_channels"):
        LatentScalable("ls", [1], machine_task=task, N=16, M=24, base_channels=24)
    missing = LatentScalable(
        "ls",
        [1, 2],
        machine_task=task,
        split=SPLIT,
        N=16,
        M=24,
        base_channels=8,
        checkpoints=str(tmp_path),
        checkpoint_pattern="rate-{quality}/model.pt",
    )
    why = missing.unavailable_reason()
    assert "rate-1/model.pt" in why and "[1, 2]" in why and "bench train" in why
    assert "no machine task" in LatentScalable("ls", [1]).unavailable_reason()


def test_training_lowers_the_loss_keeps_the_task_network_frozen_and_writes_a_usable_checkpoint(task, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos)
    method = LatentScalable("latent-scalable", [1], machine_task=task, split=SPLIT, N=16, M=24, base_channels=8)
    settings = {
        "lambdas": [0.01],
        "feature_weight": 10.0,
        "stages": {"joint": {"lr": 2e-3, "batch_size": 2, "steps": 12}},
    }
    torch.manual_seed(0)
    recipe = method.training_recipe(1, [task], settings, "cpu")
    assert [s.name for s in recipe.stages] == ["joint"] and "task" in recipe.stages[0].frozen
    batch = fixed_batch(dataset)
    before_task = module_digests(task.network)
    torch.manual_seed(3)
    before = recipe.stages[0].loss(batch)["loss"].item()
    result = train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    torch.manual_seed(3)
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < before
    assert module_digests(task.network) == before_task
    assert not any(p.requires_grad for p in task.network.parameters())
    figures = result.validation["joint"]
    assert figures["bpp_cls"] < figures["bpp_human"]  # measured on real bytes

    trained = LatentScalable(
        "latent-scalable",
        [1],
        machine_task=task,
        split=SPLIT,
        N=16,
        M=24,
        base_channels=8,
        checkpoints={1: str(tmp_path / "out" / "model.pt")},
    )
    assert trained.unavailable_reason() is None
    image = dataset.load(dataset.samples()[-1])
    assert trained.encode(image, 1).streams == method.encode(image, 1).streams
    with pytest.raises(MethodUnavailable, match="does not fit"):
        LatentScalable(
            "ls",
            [1],
            machine_task=task,
            split=SPLIT,
            N=16,
            M=24,
            base_channels=4,
            checkpoints={1: str(tmp_path / "out" / "model.pt")},
        ).network(1)


# --- the task networks with weights offline: YOLOX-Nano's and ESPNet's cuts (small stand-ins here) ------------


@pytest.fixture(scope="module")
def split_tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split-tasks")
    return {"yolox": tiny_yolox_task(folder), "espnet": tiny_espnet_task(folder)}


@pytest.mark.parametrize("kind", ["yolox", "espnet"])
def test_yolox_and_espnet_cuts_train_and_the_base_layer_decodes_as_in_memory(kind, split_tasks, photos, tmp_path):
    task = split_tasks[kind]
    dataset = small_photos(tmp_path / "img", photos)
    method = LatentScalable("latent-scalable", [1], machine_task=task, N=16, M=24, base_channels=8)
    assert method.served_tasks() == [task.name]
    settings = {
        "lambdas": [0.01],
        "feature_weight": 10.0,
        "stages": {"joint": {"lr": 2e-3, "batch_size": 2, "steps": 8}},
    }
    torch.manual_seed(0)
    recipe = method.training_recipe(1, [task], settings, "cpu")
    split = method.split_network
    assert split.split == {"yolox": "stride8", "espnet": "level3"}[kind]
    frozen = module_digests(split.network)
    batch = fixed_batch(dataset)
    torch.manual_seed(3)
    before = recipe.stages[0].loss(batch)
    result = train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    torch.manual_seed(3)
    after = recipe.stages[0].loss(batch)
    assert after["loss"].item() < before["loss"].item()
    assert after["feature_mse"].item() < before["feature_mse"].item()
    assert module_digests(split.network) == frozen
    assert result.validation["joint"][f"bpp_{task.name}"] < result.validation["joint"]["bpp_human"]

    image = dataset.load(dataset.samples()[-1])  # odd-sized: padded by the codec, then letterboxed / resized
    h, w = image.shape[:2]
    written = method.encode(image, 1)
    base = Bitstream({n: written.streams[n] for n in ("header", "z", "base")}, h, w)
    decoded = method.decode(base, task.name)
    y_hat = in_memory_latent(method, image)
    with torch.no_grad():
        features = task_features(method.network(1).lst, y_hat[:, :8], split, (h, w), 64)
        expected = split.predictions(split.back(features, (h, w)), (h, w))[0]
    assert features.shape[-2:] == split.grid_hw((h, w))  # on the grid of the network's input
    assert isinstance(decoded, HeadPrediction) and decoded.value == expected


def test_the_codec_starts_from_the_shipped_hyperprior_weights():
    """init_from reads the committed bmshj2018-hyperprior-ours q1 (fp16, entropy tables of their own size)."""

    from bench.methods.human_machine.latent_scalable import init_codec, network_class

    path = project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.pth"
    net = network_class()(128, 192, 96, 16, 8)
    lst = {k: v.clone() for k, v in net.lst.state_dict().items()}
    init_codec(net, str(path), "latent-scalable")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    assert torch.equal(net.g_a[0].weight, state["g_a.0.weight"].float())
    assert torch.equal(net.h_s[4].weight, state["h_s.4.weight"].float())
    assert all(torch.equal(v, net.lst.state_dict()[k]) for k, v in lst.items())  # the transform stays as built
    with pytest.raises(MethodUnavailable, match="other shapes"):
        init_codec(network_class()(64, 96, 48, 16, 8), str(path), "latent-scalable")


def test_a_run_started_from_the_shipped_codec_records_its_steps():
    """The training provenance reads the codec export's sidecar (steps as a number, not per stage)."""
    import json
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from bench.training.command import run_provenance

    path = project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.pth"
    stages = {"joint": {"lr": 1e-4, "batch_size": 8, "steps": 20}}
    cfg = OmegaConf.create({"recipe": {"init_from": str(path), "stages": stages}, "rate": 1, "crop": 128, "seed": 0})
    record = run_provenance(
        cfg, LatentScalable("latent-scalable", [1]), [], SimpleNamespace(name="folder"), 9, 1, "cpu"
    )
    assert record["init_from"]["total_steps"] == json.loads(path.with_suffix(".json").read_text())["total_steps"] > 0


def test_rows_record_the_model_file_or_the_installed_networks_digest(task, tmp_path):
    """What a row's ``weights`` covers for a learned method: its model's file (by SHA-256) or, installed from
    memory, the network's digest; and the task network it runs."""
    from bench.io.digests import file_sha256
    from bench.running.keys import GENERATED, weight_digests

    installed = make_method(task)
    files = installed.weight_files(1)
    assert files["model"].startswith(GENERATED) and set(files) >= {"model"}
    torch.save({"state_dict": installed.network(1).state_dict()}, tmp_path / "rate-1.pt")
    loaded = LatentScalable("latent-scalable", [1], machine_task=task, split=SPLIT, N=16, M=24, base_channels=8,
                            checkpoints=str(tmp_path), checkpoint_pattern="rate-{quality}.pt")  # fmt: skip
    digests = weight_digests(loaded.weight_files(1))
    assert digests["model"] == file_sha256(tmp_path / "rate-1.pt")
    assert {k for k in digests if k.startswith("task ")} == {f"task {role}" for role in task.weight_files()}
