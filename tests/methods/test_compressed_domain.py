"""Inference from the compressed representation (Torfason et al.), SBMD: one stream, a head on ŷ, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
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

from bench.methods.base import HUMAN, CodecError, HeadPrediction
from bench.methods.human_machine.compressed_domain import CompressedDomain, latent_from_strings, tap_synthesis
from bench.methods.learned.compressai import to_tensor
from bench.running.runner import TaskJob, measure_sample

SPLIT = "features.8"  # MobileNetV3-small: 48 channels at stride 16, the latent's own resolution


@pytest.fixture(scope="module")
def task():
    return tiny_classifier()


def tiny_codec(cls=ScaleHyperprior):
    torch.manual_seed(2)
    net = cls(8, 12)
    net.update(force=True)
    return net.eval()


def make_method(task, codec=None) -> CompressedDomain:
    method = CompressedDomain("compressed-domain", [1], machine_task=task, split=SPLIT, head_channels=16)
    torch.manual_seed(4)
    method.set_networks(1, codec or tiny_codec(), method.new_head(12))
    return method


@pytest.fixture(scope="module")
def image(photos):
    return np.ascontiguousarray(photos["coffee"][50:150, 200:330])


@pytest.mark.parametrize("cls", [ScaleHyperprior, MeanScaleHyperprior])
def test_the_latent_entropy_decoded_from_bytes_equals_the_in_memory_one(cls, task, image):
    method = make_method(task, tiny_codec(cls))
    written = method.encode(image, 1)
    assert list(written.streams) == ["header", "y", "z"]
    header, strings = method.codec.parse(written)
    net = method.codec.network(1)
    from_bytes = latent_from_strings(net, strings, header.shape)
    pad, _ = compute_padding(*image.shape[:2], min_div=64)
    with torch.no_grad(), tap_synthesis(net, run=False) as tap:
        net(F.pad(to_tensor(image), pad))  # eval mode: ŷ quantised as the coder quantises it
    assert torch.equal(from_bytes, tap.y_hat)
    decoded = method.decode(written, "cls")
    assert isinstance(decoded, HeadPrediction)
    assert decoded.value == method.head_prediction(1, tap.y_hat, *image.shape[:2])
    assert set(decoded.value) == {"top5", "scores"}


def test_the_task_head_never_runs_the_synthesis(task, image):
    method = make_method(task)
    written = method.encode(image, 1)
    net = method.codec.network(1)
    calls = []
    hook = net.g_s.register_forward_hook(lambda *args: calls.append(1))
    try:
        method.decode(written, "cls")
        assert calls == []
        assert method.decode(written, HUMAN).shape == image.shape
        assert calls == [1]
    finally:
        hook.remove()
    assert "g_s" not in net.__dict__  # the tap leaves the module as it was


def test_every_target_is_charged_the_whole_stream(task, photos, tmp_path):
    method = make_method(task)
    dataset = small_photos(tmp_path / "img", photos)
    sample = dataset.samples()[1]
    result = measure_sample(method, dataset, sample, [1], ["psnr-rgb"], [TaskJob(task, [1])])
    total = method.encode(dataset.load(sample), 1).num_bytes()
    (human,) = result.human
    (row,) = result.tasks["cls"]
    assert human["error"] is None and row["error"] is None
    assert human["bytes"] == row["bytes"] == total
    assert row["prediction"]["top5"][0] in range(10)


def test_errors_name_the_problem(task, tmp_path):
    method = make_method(task)
    with pytest.raises(CodecError, match="serves targets"):
        method.decode(method.encode(np.zeros((64, 64, 3), np.uint8), 1), "segmentation")
    untrained = CompressedDomain("cd", [1, 2], machine_task=task, split=SPLIT, checkpoints=str(tmp_path))
    assert "cd-q1.pt" in untrained.unavailable_reason()
    assert "no machine task" in CompressedDomain("cd", [1]).unavailable_reason()


def test_head_training_lowers_the_loss_on_a_frozen_codec_and_the_checkpoint_decodes(task, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos)
    method = CompressedDomain("compressed-domain", [1], machine_task=task, split=SPLIT, head_channels=16)
    codec = tiny_codec()
    method.codec.install(1, codec)  # the codec the head is trained on (normally zoo or project weights)
    settings = {"stages": {"head": {"lr": 1e-4, "batch_size": 2, "steps": 12}}}
    recipe = method.training_recipe(1, [task], settings, "cpu")
    assert [s.name for s in recipe.stages] == ["head"]
    assert set(recipe.stages[0].frozen) == {"codec", "task"}
    assert str(recipe.trained_on["backbone"]).startswith("generated:")  # checkpoints name the frozen codec
    frozen = {"codec": module_digests(codec), "task": module_digests(task.network)}
    batch = fixed_batch(dataset)
    recipe.model.head.train()  # the objective the stage minimises: batch norm on the batch's statistics
    before = recipe.stages[0].loss(batch)["loss"].item()
    result = train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    assert module_digests(task.network) == frozen["task"]
    # update() during validation rebuilds the same entropy tables: the codec's weights are untouched
    assert {k: v for k, v in module_digests(codec).items() if "_cdf" not in k and "_offset" not in k} == {
        k: v for k, v in frozen["codec"].items() if "_cdf" not in k and "_offset" not in k
    }
    assert result.validation["head"]["bpp_cls"] == result.validation["head"]["bpp_human"]

    trained = CompressedDomain(
        "compressed-domain",
        [1],
        machine_task=task,
        split=SPLIT,
        head_channels=16,
        checkpoints={1: str(tmp_path / "out" / "model.pt")},
    )
    assert trained.unavailable_reason() is None
    image = dataset.load(dataset.samples()[-1])
    written = trained.encode(image, 1)
    assert written.streams == method.encode(image, 1).streams
    assert trained.decode(written, "cls") == method.decode(written, "cls")

    recipe.model.head.train()
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < before


# --- the task networks with weights offline: YOLOX-Nano's and ESPNet's cuts (small stand-ins here) ------------


@pytest.fixture(scope="module")
def split_tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split-tasks")
    return {"yolox": tiny_yolox_task(folder), "espnet": tiny_espnet_task(folder)}


@pytest.mark.parametrize("kind", ["yolox", "espnet"])
def test_heads_on_yolox_and_espnet_cuts_train_and_decode_from_bytes_as_in_memory(kind, split_tasks, photos, tmp_path):
    task = split_tasks[kind]
    dataset = small_photos(tmp_path / "img", photos)
    method = CompressedDomain("compressed-domain", [1], machine_task=task, head_channels=16)
    assert method.served_tasks() == [task.name]
    codec = tiny_codec()
    method.codec.install(1, codec)
    settings = {"stages": {"head": {"lr": 1e-3, "batch_size": 2, "steps": 8}}}
    torch.manual_seed(0)
    recipe = method.training_recipe(1, [task], settings, "cpu")
    teacher = method.split_network
    assert teacher.split == {"yolox": "stride8", "espnet": "level3"}[kind]
    frozen = module_digests(teacher.network)
    head_params = {n for n, _ in recipe.model.head.named_parameters()}
    assert any(n.startswith("back.") for n in head_params) and any(n.startswith("adapter.") for n in head_params)
    batch = fixed_batch(dataset)
    recipe.model.head.train()
    before = recipe.stages[0].loss(batch)["loss"].item()
    train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    assert module_digests(teacher.network) == frozen

    trained = CompressedDomain(
        "compressed-domain",
        [1],
        machine_task=task,
        head_channels=16,
        checkpoints={1: str(tmp_path / "out" / "model.pt")},
    )
    image = dataset.load(dataset.samples()[-1])
    written = trained.encode(image, 1)
    net = trained.codec_network(1)
    pad, _ = compute_padding(*image.shape[:2], min_div=64)
    with torch.no_grad(), tap_synthesis(net, run=False) as tap:
        net(F.pad(to_tensor(image), pad))  # the in-memory quantised ŷ
    decoded = trained.decode(written, task.name)
    assert isinstance(decoded, HeadPrediction)
    assert decoded.value == trained.head_prediction(1, tap.y_hat, *image.shape[:2])
    assert decoded.value == method.decode(written, task.name).value  # the checkpoint holds the trained head

    recipe.model.head.train()  # (batch norm on the batch: this updates the head's statistics)
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < before
