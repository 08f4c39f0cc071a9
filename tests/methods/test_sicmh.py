"""SICMH (seed 001): real bytes per layer, decode = the in-memory path, MBHD charging, training stages.

Tiny seeded networks on the CPU; the task network is a randomly initialised
torchvision LR-ASPP (a real architecture, differentiable, no download).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.datasets.folder import ImageFolder
from bench.methods.base import HUMAN, Bitstream, CodecError, Family
from bench.methods.human_machine.sicmh import BASE_STREAMS, SICMH, Architecture
from bench.methods.human_machine.sicmh_training import STAGES, rate_point, validation_figures
from bench.methods.learned.compressai import Header, to_tensor
from bench.running.runner import measure_sample
from bench.tasks.segmentation import TorchvisionSegmenter
from bench.training.frozen import module_digests
from bench.training.loop import CropSampler, split_samples, train
from bench.training.recipe import Batch, FrozenModuleError, TrainingError
from tests.task_fixtures import DominantChannel

TINY = {
    "width": 8,
    "latent_channels": 8,
    "h1_channels": 8,
    "h2_channels": 4,
    "h1_groups": 2,
    "prediction_width": 8,
    "fuse_channels": 4,
    "heads": ["segmentation"],
}
RECIPE = {
    "rate_points": {1: {"side_lambda": 0.1, "fine_lambda": 0.01}},
    "stages": {name: {"lr": 1e-3, "batch_size": 2, "steps": 2} for name in STAGES},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_method(**kw) -> SICMH:
    options = {"name": "sicmh-tiny", "rates": [1], "architecture": TINY, "task_heads": {"seg": "segmentation"}}
    return SICMH(**{**options, **kw})


def seeded_network(method: SICMH, seed: int = 0):
    """An untrained network whose latents span several quantization bins (so the bytes carry the image)."""
    torch.manual_seed(seed)
    net = method.new_network()
    with torch.no_grad():
        side = net.side
        for last, gain in ((side.encoder[-1], 20), (side.encoder_h1[-1], 8), (side.encoder_h2[-1], 4)):
            last.weight.mul_(gain)
        net.enhancement.encoder_r[-1].weight.mul_(8)
    return net


@pytest.fixture()
def method() -> SICMH:
    m = tiny_method()
    m.set_network(1, seeded_network(m))
    return m


@pytest.fixture()
def image(photos) -> np.ndarray:
    return np.ascontiguousarray(photos["astronaut"][100:200, 150:280])  # 100 x 130: padded to 128 x 192


def segmenter(name: str = "seg") -> TorchvisionSegmenter:
    torch.manual_seed(1)
    task = TorchvisionSegmenter(name, model="lraspp_mobilenet_v3_large", weights=None, num_classes=5, resize=None)
    task.device_name = "cpu"
    task.network  # noqa: B018 - built now, with the seed above
    return task


def in_memory(method: SICMH, image: np.ndarray):
    """The network's own forward pass (eval: latents rounded) on the image padded as the method pads it."""
    net = method.network(1)
    with torch.no_grad():
        return net(method._padded(image), heads=["segmentation"], fine=True)


def as_uint8(method: SICMH, x: torch.Tensor, image: np.ndarray) -> np.ndarray:
    return method._unpadded(x, *image.shape[:2])


# --- bytes and decoding --------------------------------------------------------------


def test_streams_are_the_two_layers_in_order(method, image):
    bs = method.encode(image, 1)
    assert list(bs.streams) == ["base.header", "base.h2", "base.h1", "enh.yr"]
    assert all(len(b) > 0 for b in bs.streams.values())
    header, _ = Header.from_bytes(bs.streams["base.header"])
    assert (header.height, header.width, header.quality) == (100, 130, 1)
    assert header.shape == (2, 3)  # ĥ2 of the 128 x 192 padded image is at 1/64
    assert len(header.lengths[1]) == 2  # one ĥ1 string per CAHCM group
    assert sum(header.lengths[1]) == len(bs.streams["base.h1"])


def test_decode_from_bytes_equals_the_in_memory_path(method, image, tmp_path):
    """Encode -> bytes -> a decoder that has only those bytes and the weights file -> the eval forward pass."""
    bs = method.encode(image, 1)
    path = tmp_path / "sicmh-1.pt"
    torch.save({"state_dict": method.network(1).state_dict()}, path)
    decoder = tiny_method(checkpoints={1: str(path)})
    received = Bitstream({k: bytes(v) for k, v in bs.streams.items()}, height=bs.height, width=bs.width)
    out = in_memory(method, image)

    np.testing.assert_array_equal(decoder.decode(received, HUMAN), as_uint8(method, out.x_fine, image))
    task_view = decoder.decode(Bitstream({n: received.streams[n] for n in BASE_STREAMS}, 100, 130), "seg")
    np.testing.assert_array_equal(task_view, as_uint8(method, out.machine["segmentation"], image))
    coarse = decoder.reconstruct(received, "coarse")
    np.testing.assert_array_equal(coarse, as_uint8(method, out.x_coarse, image))
    assert task_view.shape == coarse.shape == image.shape and task_view.dtype == np.uint8

    net = decoder.network(1)
    with torch.no_grad():
        h1_hat, h2_hat = net.decompress_base(
            [received.streams["base.h2"]],
            _split_h1(received),
            Header.from_bytes(received.streams["base.header"])[0].shape,
        )
    torch.testing.assert_close(h1_hat, out.h1_hat, rtol=0, atol=0)
    torch.testing.assert_close(h2_hat, out.h2_hat, rtol=0, atol=0)


def _split_h1(bs: Bitstream) -> list[list[bytes]]:
    header, _ = Header.from_bytes(bs.streams["base.header"])
    data, out, pos = bs.streams["base.h1"], [], 0
    for n in header.lengths[1]:
        out.append([data[pos : pos + n]])
        pos += n
    return out


def test_the_bytes_carry_the_content(method, image, photos):
    """A different image gives different bytes, and flipping a byte of ĥ1 changes what the task decodes."""
    a = method.encode(image, 1)
    b = method.encode(np.ascontiguousarray(photos["coffee"][:100, :130]), 1)
    assert all(a.streams[n] != b.streams[n] for n in ("base.h2", "base.h1", "enh.yr"))
    h1 = bytearray(a.streams["base.h1"])
    h1[0] ^= 0xFF
    broken = Bitstream({**a.streams, "base.h1": bytes(h1)}, a.height, a.width)
    assert not np.array_equal(method.decode(broken, "seg"), method.decode(a, "seg"))


# --- the family contract, through the runner -----------------------------------------


def test_mbhd_charges_tasks_the_base_layer_and_the_human_both(method, photo_folder):
    dataset = ImageFolder(photo_folder)
    sample = dataset.samples()[0]
    task = DominantChannel("seg")
    result = measure_sample(method, dataset, sample, [1], ["psnr-rgb"], [_job(task)])
    human, machine = result.human[0], result.tasks["seg"][0]
    assert human["error"] is None and machine["error"] is None, (human, machine)
    sizes = human["bytes_by_stream"]
    base = sum(sizes[n] for n in BASE_STREAMS)
    assert machine["bytes"] == base
    assert human["bytes"] == base + sizes["enh.yr"] == sum(sizes.values())
    assert machine["bpp"] == pytest.approx(base * 8 / (human["height"] * human["width"]))
    assert method.family is Family.MBHD
    bs = method.encode(dataset.load(sample), 1)
    assert method.streams_for("seg", bs) == list(BASE_STREAMS)
    assert method.streams_for("another-task", bs) == list(BASE_STREAMS)
    assert method.streams_for(HUMAN, bs) == [*BASE_STREAMS, "enh.yr"]


def _job(task):
    from bench.running.runner import TaskJob

    return TaskJob(task, [1], False)


def test_coarse_mode_writes_and_charges_the_base_layer_only(image):
    m = tiny_method(human_reconstruction="coarse")
    m.set_network(1, seeded_network(m))
    bs = m.encode(image, 1)
    assert list(bs.streams) == list(BASE_STREAMS)
    assert m.streams_for(HUMAN, bs) == list(BASE_STREAMS)
    full = tiny_method()
    full.set_network(1, seeded_network(full))
    np.testing.assert_array_equal(m.decode(bs, HUMAN), full.reconstruct(full.encode(image, 1), "coarse"))


# --- errors --------------------------------------------------------------------------


def test_a_task_without_a_head_is_refused_by_name(method, image):
    bs = method.encode(image, 1)
    with pytest.raises(CodecError, match=r"no fusion head for task 'detection'.*task_heads"):
        method.decode(bs, "detection")
    assert tiny_method(default_head="segmentation").head_for("detection") == "segmentation"


def test_malformed_or_missing_layers_are_named(method, image):
    bs = method.encode(image, 1)
    with pytest.raises(CodecError, match=r"lacks stream\(s\) \['base.h1'\]"):
        method.decode(Bitstream({"base.header": bs.streams["base.header"], "base.h2": bs.streams["base.h2"]}, 100, 130))
    with pytest.raises(CodecError, match="needs the enhancement layer"):
        method.decode(Bitstream({n: bs.streams[n] for n in BASE_STREAMS}, 100, 130), HUMAN)
    short = Bitstream({**bs.streams, "base.h2": bs.streams["base.h2"][:-1]}, 100, 130)
    with pytest.raises(CodecError, match="base.header says"):
        method.decode(short, "seg")
    with pytest.raises(CodecError, match="expected an H x W x 3 uint8 image"):
        method.encode(image.astype(np.float32), 1)
    with pytest.raises(CodecError, match=r"no rate point 7"):
        method.encode(image, 7)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['channels'\]"):
        tiny_method(architecture={"channels": 3})
    with pytest.raises(ValueError, match="must split into h1_groups"):
        tiny_method(architecture={**TINY, "h1_groups": 3})
    with pytest.raises(ValueError, match="unknown head"):
        tiny_method(task_heads={"seg": "classification"})
    with pytest.raises(ValueError, match="human_reconstruction must be one of"):
        tiny_method(human_reconstruction="best")
    with pytest.raises(ValueError, match="rates are trained rate points"):
        tiny_method(rates=[0])


def test_missing_weights_name_the_file(tmp_path):
    m = tiny_method(checkpoints=str(tmp_path), checkpoint_pattern="rate-{quality}/model.pt")
    reason = m.unavailable_reason()
    assert str(tmp_path / "rate-1" / "model.pt") in reason and "python -m bench train method=sicmh-tiny" in reason
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"side.encoder.0.weight": torch.zeros(1)}}, wrong)
    with pytest.raises(Exception, match="does not fit the configured architecture"):
        tiny_method(checkpoints={1: str(wrong)}).network(1)


# --- training --------------------------------------------------------------------------


def _steps_lower_the_loss(recipe, stage_name, x, steps=3, lr=2e-3):
    stage = next(s for s in recipe.stages if s.name == stage_name)
    net = recipe.model
    params = [p for sub in stage.trains for p in net.get_submodule(sub).parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    net.eval()
    for sub in stage.trains:
        net.get_submodule(sub).train()
    opt = torch.optim.Adam(params, lr=lr)
    batch = Batch(x, [])

    def loss() -> torch.Tensor:
        torch.manual_seed(123)  # the same training noise every time: the loss of the same batch
        return stage.loss(batch)["loss"]

    before = float(loss().detach())
    for _ in range(steps):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    return before, float(loss().detach())


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_lowers_its_loss_on_a_tiny_batch(stage, photos):
    m = tiny_method()
    task = segmenter()
    torch.manual_seed(0)
    recipe = m.training_recipe(1, [task], RECIPE, "cpu")
    x = torch.cat([to_tensor(photos["astronaut"][:64, :64]), to_tensor(photos["coffee"][:64, 100:164])])
    before, after = _steps_lower_the_loss(recipe, stage, x)
    assert after < before, (stage, before, after)


def test_training_runs_every_stage_keeps_frozen_parts_and_loads_into_the_method(photo_folder, tmp_path):
    """The generic loop runs the paper's four stages; each stage's frozen parts are bit-identical afterwards."""
    dataset = ImageFolder(photo_folder)
    train_samples, val_samples = split_samples(dataset.samples(), 1)
    m = tiny_method()
    task = segmenter()
    task_before = module_digests(task.network)
    torch.manual_seed(0)
    recipe = m.training_recipe(1, [task], RECIPE, "cpu")
    initial = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    sampler = CropSampler(dataset, train_samples, crop=64, seed=3)
    result = train(
        recipe, sampler, RECIPE["stages"], tmp_path / "run", val_images=[dataset.load(s) for s in val_samples]
    )
    assert result.finished and result.steps == {name: 2 for name in STAGES}
    states = {name: torch.load(tmp_path / "run" / f"{name}.pt", weights_only=True)["state_dict"] for name in STAGES}

    def part(state, prefix):
        return {k: v for k, v in state.items() if k.startswith(prefix)}

    def same(a, b, prefix):
        a, b = part(a, prefix), part(b, prefix)
        return bool(a) and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    trained_in = {"side": "side.", "heads": "fusion.segmentation.", "coarse": "coarse.", "fine": "enhancement."}
    before = initial
    for stage, prefix in trained_in.items():  # each stage trains its part ...
        assert not same(before, states[stage], prefix), stage
        before = states[stage]
    assert not same(initial, states["coarse"], "fusion.coarse.")
    for later in ("heads", "coarse", "fine"):  # ... and the parts of the stages before it stay bit-identical
        assert same(states["side"], states[later], "side.")
    assert same(states["side"], states["heads"], "fusion.coarse.")
    assert same(states["heads"], states["fine"], "fusion.segmentation.")
    assert same(states["coarse"], states["fine"], "fusion.coarse.") and same(
        states["coarse"], states["fine"], "coarse."
    )
    assert module_digests(task.network) == task_before  # the task network never trains
    figures = result.validation["fine"]
    assert figures["bpp_total"] > figures["bpp_base"] > 0 and np.isfinite(figures["psnr_fine"])

    trained = tiny_method(checkpoints={1: str(tmp_path / "run" / "model.pt")})
    image = dataset.load(val_samples[0])
    bs = trained.encode(image, 1)
    assert trained.decode(bs, HUMAN).shape == image.shape
    assert validation_figures(trained, 1, trained.network(1), [image])["bpp_total"] == pytest.approx(bs.bpp())


def test_a_stage_that_touches_a_frozen_part_is_caught(photos):
    m = tiny_method()
    recipe = m.training_recipe(1, [segmenter()], RECIPE, "cpu")
    fine = next(s for s in recipe.stages if s.name == "fine")
    with pytest.raises(FrozenModuleError, match="frozen module 'coarse'"):
        from bench.training.frozen import trained_parameters

        trained_parameters(recipe.model, type(fine)("fine", ["enhancement", "coarse"], fine.frozen, fine.loss))


def test_recipe_errors_are_named():
    m = tiny_method()
    with pytest.raises(TrainingError, match="no rate_points entry for rate 2"):
        m.training_recipe(2, [], RECIPE, "cpu")
    with pytest.raises(TrainingError, match="give one with task=<name>"):
        m.training_recipe(1, [], RECIPE, "cpu")
    with pytest.raises(TrainingError, match="no fusion head for task 'detection'"):
        m.training_recipe(1, [DominantChannel("detection")], RECIPE, "cpu")
    with pytest.raises(TrainingError, match="has no differentiable network to train against"):
        m.training_recipe(1, [DominantChannel("seg")], {**RECIPE, "run": ["heads"]}, "cpu")
    only_images = m.training_recipe(1, [], {**RECIPE, "run": ["coarse", "fine"]}, "cpu")
    assert [s.name for s in only_images.stages] == ["coarse", "fine"]
    assert rate_point({"rate_points": {"1": {"side_lambda": 1, "fine_lambda": 2}}}, 1) == {
        "side_lambda": 1.0,
        "fine_lambda": 2.0,
    }


def test_architecture_round_trips_through_its_config():
    arch = Architecture.from_config(TINY)
    assert Architecture.from_config(arch.to_config()) == arch


# --- ESPNet, the paper's task (segmentation) with weights offline (a small stand-in here) -----------------------


def test_espnet_is_trained_when_the_run_names_no_task_and_its_head_decodes_from_bytes(photos, tmp_path):
    from split_fixtures import tiny_espnet_task

    task = tiny_espnet_task(tmp_path, input_size=(64, 64))
    m = tiny_method(task_heads={"espnet-tiny": "segmentation"}, machine_task=task)
    assert m.served_tasks() == ["espnet-tiny"] and tiny_method().served_tasks() == []
    torch.manual_seed(0)
    recipe = m.training_recipe(1, [], RECIPE, "cpu")  # no run task: the method's own
    assert "task:espnet-tiny" in recipe.stages[0].frozen
    assert recipe.stages[0].frozen["task:espnet-tiny"] is task.network
    x = torch.cat([to_tensor(photos["astronaut"][:64, :64]), to_tensor(photos["coffee"][:64, 100:164])])
    before, after = _steps_lower_the_loss(recipe, "side", x)
    assert after < before

    m.set_network(1, recipe.model)
    image = np.ascontiguousarray(photos["chelsea"][:100, :130])
    written = m.encode(image, 1)
    base = Bitstream({n: written.streams[n] for n in BASE_STREAMS}, 100, 130)
    with torch.no_grad():
        expected = recipe.model(m._padded(image), heads=["segmentation"]).machine["segmentation"]
    np.testing.assert_array_equal(m.decode(base, "espnet-tiny"), as_uint8(m, expected, image))
    assert "no fusion head for task 'espnet-tiny'" in tiny_method(machine_task=task).unavailable_reason()


def test_init_encoder_from_starts_the_encoder_and_the_residue_codec_from_a_hyperprior():
    """The shipped hyperprior's g_a becomes the Encoder and the residue's analysis, its g_s the residue's
    synthesis; the rest stays as initialised."""
    from bench.methods.human_machine.sicmh_model import SICMHNetwork
    from bench.methods.human_machine.sicmh_training import load_encoder_from_codec
    from bench.methods.learned.compressai import state_dict_of
    from bench.resolvers import project_checkpoints

    path = project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.pth"
    small = {"h1_channels": 8, "h2_channels": 8, "h1_groups": 2, "prediction_width": 8, "fuse_channels": 8}
    torch.manual_seed(0)
    net = SICMHNetwork(Architecture(width=128, latent_channels=192, heads=("segmentation",), **small))
    fusion = module_digests(net.fusion)
    load_encoder_from_codec(net, path)
    codec = state_dict_of(torch.load(path, map_location="cpu", weights_only=True))
    copied = ((net.side.encoder, "g_a."), (net.enhancement.encoder_r, "g_a."), (net.enhancement.decoder_r, "g_s."))
    for module, prefix in copied:
        for key, value in module.state_dict().items():
            assert torch.equal(value, codec[prefix + key].float()), prefix + key
    assert module_digests(net.fusion) == fusion
    with pytest.raises(TrainingError, match="does not fit the Encoder"):
        load_encoder_from_codec(SICMHNetwork(Architecture(width=64, latent_channels=192, **small)), path)
