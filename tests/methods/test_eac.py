"""EAC / ICMH: real bytes per latent subset, MBHD charging, exact decode, both training stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from hydra import compose, initialize_config_module
from task_fixtures import DominantChannel

from bench.datasets.folder import ImageFolder
from bench.methods.base import HUMAN, Bitstream, MethodUnavailable
from bench.methods.human_machine.eac import EAC, selections
from bench.methods.learned.compressai import CompressAICodec, to_tensor, to_uint8
from bench.running.runner import TaskJob, measure_sample
from bench.tasks.segmentation import TorchvisionSegmenter
from bench.training.command import train_job
from bench.training.frozen import module_digests
from bench.training.loop import CropSampler, load_checkpoint, train

TINY = {"N": 8, "M": 12, "seed": 0}
SMALL_MODULES = {"predictor_channels": 16, "adapter_channels": 16}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _wake(method: EAC, quality: int) -> None:
    """An untrained analysis transform gives |y| < 0.5 (ŷ all zero): scale it so the latent carries the image."""
    with torch.no_grad():
        method.backbone(quality).g_a[-1].weight.mul_(10)


def tiny_eac(tasks=("cls", "seg"), rates=(1,), arch="bmshj2018-hyperprior", keep_all=False) -> EAC:
    """Seeded untrained backbone and predictors; adapters perturbed so that they change the image."""
    method = EAC(
        "eac", list(rates), tasks=list(tasks), backbone={"arch": arch}, untrained_backbone=TINY, **SMALL_MODULES
    )
    _wake(method, rates[0])
    for k, task in enumerate(tasks):
        torch.manual_seed(10 + k)
        modules = method.new_task_modules(rates[0])
        torch.nn.init.normal_(modules.adapter.out.weight, std=0.02)
        if keep_all:
            last = modules.predictor.net[-1]
            torch.nn.init.zeros_(last.weight)
            with torch.no_grad():
                last.bias[: last.out_channels // 2] = -10.0  # drop logits
                last.bias[last.out_channels // 2 :] = 10.0  # keep logits
        method.set_task_modules(rates[0], task, modules)
    return method


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()[100:300, 50:350]  # 200 x 300: padded to 256 x 320


def _received(bitstream: Bitstream, names: list[str]) -> Bitstream:
    return Bitstream({n: bitstream.streams[n] for n in names}, bitstream.height, bitstream.width)


def _in_memory(method: EAC, image: np.ndarray, target: str) -> np.ndarray:
    pad, unpad = compute_padding(*image.shape[:2], min_div=64)
    with torch.no_grad():
        x_hat = method.forward_quantized(F.pad(to_tensor(image), pad), 1, target)
    return to_uint8(F.pad(x_hat, unpad))


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_encode_bytes_decode_equals_the_in_memory_quantized_path(image, arch):
    method = tiny_eac(arch=arch)
    written = method.encode(image, 1)
    counts = written.info["elements"]
    assert sum(counts.values()) == 12 * (256 // 16) * (320 // 16)  # the subsets partition the latent
    assert min(counts.values()) > 0
    for target in (HUMAN, "cls", "seg"):
        decoded = method.decode(_received(written, method.streams_for(target, written)), target)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, _in_memory(method, image, target))
    # the task images differ: different subsets, different adapters
    assert not np.array_equal(method.decode(written, "cls"), method.decode(written, "seg"))


def test_each_task_is_charged_its_subsets_plus_the_base_layer(photo_folder):
    dataset = ImageFolder(photo_folder)
    method = tiny_eac()
    sample = dataset.samples()[0]
    tasks = [DominantChannel("cls"), DominantChannel("seg")]  # two tasks on one image
    result = measure_sample(method, dataset, sample, [1], ["psnr-rgb"], [TaskJob(t, [1]) for t in tasks])
    written = method.encode(dataset.load(sample), 1)
    size = {n: len(b) for n, b in written.streams.items()}
    assert list(size) == ["header", "z", "y.cls", "y.seg", "y.rest"]
    base = size["header"] + size["z"]
    assert result.tasks["cls"][0]["bytes"] == base + size["y.cls"]
    assert result.tasks["seg"][0]["bytes"] == base + size["y.cls"] + size["y.seg"]
    assert result.human[0]["bytes"] == written.num_bytes() == sum(size.values())
    h, w = dataset.load(sample).shape[:2]
    assert result.tasks["cls"][0]["bpp"] == (base + size["y.cls"]) * 8 / (h * w)
    for t in tasks:
        row = result.tasks[t.name][0]
        assert row["error"] is None and len(row["prediction"]) == 16
    # a task the method has no subset for is an error of its rows, naming the tasks it has
    other = measure_sample(method, dataset, sample, [], ["psnr-rgb"], [TaskJob(DominantChannel("depth"), [1])])
    assert "no layer is declared for target 'depth'" in other.tasks["depth"][0]["error"]


def test_the_human_gets_the_plain_backbone_reconstruction(image):
    method = tiny_eac()
    plain = CompressAICodec("plain", [1], arch="bmshj2018-hyperprior")
    plain._models[1] = method.backbone(1)
    expected = plain.decode(plain.encode(image, 1))
    np.testing.assert_array_equal(method.decode(method.encode(image, 1), HUMAN), expected)
    # every mask keeps everything: the first task's subset is the whole latent, the others are empty
    keep = tiny_eac(keep_all=True)
    written = keep.encode(image, 1)
    assert written.info["elements"]["seg"] == written.info["elements"]["rest"] == 0
    assert written.streams["y.seg"] == written.streams["y.rest"] == b""
    np.testing.assert_array_equal(keep.decode(written, HUMAN), expected)
    for modules in keep._task_modules.values():
        torch.nn.init.zeros_(modules.adapter.out.weight)  # identity adapter
    cls_only = _received(written, keep.streams_for("cls", written))
    np.testing.assert_array_equal(keep.decode(cls_only, "cls"), expected)


def test_subsets_are_nested_task_by_task():
    masks = [torch.tensor([1, 1, 0, 0]), torch.tensor([0, 1, 1, 0])]
    first, second, rest = selections(masks)
    assert first.tolist() == [True, True, False, False]
    assert second.tolist() == [False, False, True, False]  # what the first task did not already send
    assert rest.tolist() == [False, False, False, True]


def test_malformed_or_mismatched_bitstreams_are_refused(image):
    method = tiny_eac()
    written = method.encode(image, 1)
    with pytest.raises(Exception, match="stream 'y.cls' has 3 bytes, header says"):
        method.decode(Bitstream({**written.streams, "y.cls": b"abc"}, *image.shape[:2]))
    one_task = tiny_eac(tasks=("cls",))
    with pytest.raises(Exception, match=r"has 2 task subsets, this decoder is configured for 1 \(\['cls'\]\)"):
        one_task.decode(written)


def test_missing_weights_name_the_file_and_the_command(tmp_path):
    method = EAC("icmh", [3], tasks=["detection"], untrained_backbone=TINY, checkpoints=tmp_path)
    why = method.unavailable_reason()
    assert str(tmp_path / "detection" / "rate-3" / "model.pt") in why
    assert "python -m bench train method=icmh task=detection rate=3" in why
    with pytest.raises(MethodUnavailable, match="model.pt is missing"):
        method.encode(np.zeros((64, 64, 3), np.uint8), 3)
    with pytest.raises(ValueError, match="cheng2020-anchor' is not supported"):
        EAC("eac", [1], tasks=["a"], backbone={"arch": "cheng2020-anchor"})


def tiny_segmenter(name: str = "cls") -> TorchvisionSegmenter:
    """An untrained, seeded torchvision LR-ASPP at the crop's size: the frozen task network."""
    torch.manual_seed(0)
    task = TorchvisionSegmenter(
        name,
        model="lraspp_mobilenet_v3_large",
        weights=None,
        num_classes=3,
        label_space=None,
        resize=None,
        device="cpu",
    )
    _ = task.network  # built now, under the seed
    return task


def _run_stages(method, task, photo_folder, tmp_path, steps=12):
    recipe = method.training_recipe(1, [task], {"lambdas": {1: 1.0}, "tau": 1.0}, "cpu")
    dataset = ImageFolder(photo_folder)
    sampler = CropSampler(dataset, dataset.samples(), crop=64, seed=0)
    settings = {name: {"lr": 1e-2, "batch_size": 4, "steps": steps} for name in ("predictor", "adapter")}
    return recipe, sampler, settings


def test_each_training_stage_lowers_its_loss_and_leaves_frozen_networks_untouched(photo_folder, tmp_path):
    method = tiny_eac(tasks=("cls",))
    task = tiny_segmenter()
    recipe, sampler, settings = _run_stages(method, task, photo_folder, tmp_path)
    backbone, network = method.backbone(1), task.network
    before = {"backbone": module_digests(backbone), "task": module_digests(network)}
    batch = CropSampler(sampler.dataset, sampler.samples, crop=64, seed=5).batch(4, "cpu")

    def loss_of(stage):
        torch.manual_seed(0)  # the same Gumbel noise before and after
        with torch.no_grad():
            return float(stage.loss(batch)["loss"])

    start = loss_of(recipe.stages[0])
    predictor_before = module_digests(recipe.model.predictor)
    only = {"predictor": settings["predictor"], "adapter": {**settings["adapter"], "steps": 0}}
    train(recipe, sampler, only, tmp_path / "stage1")
    assert loss_of(recipe.stages[0]) < start
    predictor_trained = module_digests(recipe.model.predictor)
    assert predictor_trained != predictor_before
    start = loss_of(recipe.stages[1])
    only = {"predictor": {**settings["predictor"], "steps": 0}, "adapter": settings["adapter"]}
    train(recipe, sampler, only, tmp_path / "stage2")
    assert loss_of(recipe.stages[1]) < start
    assert module_digests(recipe.model.predictor) == predictor_trained  # stage 2 froze the predictor
    # frozen: backbone and task network bit-identical; stage 2 left the predictor alone
    assert module_digests(backbone) == before["backbone"] and module_digests(network) == before["task"]
    assert not any(p.requires_grad for p in [*backbone.parameters(), *network.parameters()])


def test_a_trained_checkpoint_is_what_the_method_loads(photo_folder, tmp_path):
    method = tiny_eac(tasks=("cls",))
    task = tiny_segmenter()
    recipe, sampler, settings = _run_stages(method, task, photo_folder, tmp_path, steps=2)
    dataset = ImageFolder(photo_folder)
    val = [dataset.load(dataset.samples()[0])[:96, :128]]
    result = train(recipe, sampler, settings, tmp_path / "run", val_images=val)
    figures = result.validation["adapter"]
    assert 0 < figures["bpp/cls"] < figures["bpp/human"]  # real bytes: the task is charged less
    assert figures["psnr/human"] > 0 and np.isfinite(figures["loss/cls"])
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["validation"]["adapter"] == figures
    loaded = EAC(
        "eac",
        [1],
        ["cls"],
        untrained_backbone=TINY,
        checkpoints=tmp_path,
        checkpoint_pattern="run/model.pt",
        **SMALL_MODULES,
    )
    assert loaded.unavailable_reason() is None
    _wake(loaded, 1)
    image = val[0]
    np.testing.assert_array_equal(
        loaded.decode(loaded.encode(image, 1), "cls"), method.decode(method.encode(image, 1), "cls")
    )


def test_python_m_bench_train_runs_the_recipe_from_config(photo_folder, tmp_path):
    overrides = [
        "method=icmh",
        "method.tasks=[tiny]",
        "method.untrained_backbone={N: 8, M: 12, seed: 0}",
        "method.rates=[2]",
        "method.predictor_channels=16",
        "method.adapter_channels=16",
        "rate=2",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        "task=detection",
        "task.name=tiny",
        "task.model=fasterrcnn_mobilenet_v3_large_320_fpn",
        "task.weights=null",
        "task.min_size=64",
        "task.max_size=64",
        "device=cpu",
        "crop=64",
        "val_samples=1",
        "recipe.stages.predictor.steps=2",
        "recipe.stages.predictor.batch_size=2",
        "recipe.stages.adapter.steps=1",
        "recipe.stages.adapter.batch_size=2",
        f"runs_dir={tmp_path}",
    ]
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.recipe.stages.predictor.lr == 1e-4 and cfg.recipe.stages.adapter.lr == 1e-3  # the paper's
    result = train_job(cfg)
    out = tmp_path / "icmh" / "tiny" / "rate-2"
    assert result.finished and result.out_dir == out
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["config"]["recipe"]["lambdas"][2] == 0.225 and ckpt["config"]["rate"] == 2
    assert set(ckpt["validation"]) == {"predictor", "adapter"}


def _backbone_file(folder, seed: int):
    """A tiny seeded bmshj2018-hyperprior saved as quality 1's file in ``folder``: a backbone read from disk."""
    from compressai.zoo.image import model_architectures

    torch.manual_seed(seed)
    net = model_architectures["bmshj2018-hyperprior"](8, 12)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(10)  # as _wake: a latent that carries the image
    net.update(force=True)
    folder.mkdir(parents=True)
    path = folder / "bmshj2018-hyperprior-mse-q1.pth"
    torch.save(net.state_dict(), path)
    return path


def _eac_on(backbone_dir, checkpoints=None) -> EAC:
    backbone = {"arch": "bmshj2018-hyperprior", "checkpoints": str(backbone_dir)}
    backbone["checkpoint_pattern"] = "{arch}-{metric}-q{quality}.pth"
    return EAC("icmh", [1], ["cls"], backbone=backbone, checkpoints=checkpoints, **SMALL_MODULES)


def test_an_exported_module_records_its_backbone_and_refuses_another(photo_folder, tmp_path, image):
    from bench.training.export import export_module
    from bench.training.weights import read_sidecar

    file_a = _backbone_file(tmp_path / "a", seed=1)
    file_b = _backbone_file(tmp_path / "b", seed=2)
    method = _eac_on(file_a.parent)
    recipe, sampler, settings = _run_stages(method, tiny_segmenter(), photo_folder, tmp_path, steps=2)
    train(recipe, sampler, settings, tmp_path / "run", provenance={"method": "icmh", "rate": 1})
    weights, sidecar = export_module(tmp_path / "run" / "model.pt", tmp_path / "ship" / "cls" / "rate-1")
    meta = read_sidecar(weights)
    assert meta["trained_on"]["backbone"]["file"] == file_a.name and meta["steps"] == {"predictor": 2, "adapter": 2}
    assert meta["total_steps"] == 4 and meta["origin"] == "local"
    stored = torch.load(weights, weights_only=True)
    assert stored["predictor.net.0.weight"].dtype == torch.float16  # shipped small

    loaded = _eac_on(file_a.parent, tmp_path / "ship")
    written = loaded.encode(image, 1)  # loads the modules onto the backbone they were trained on
    assert loaded.decode(written, "cls").shape == image.shape
    assert loaded.weight_files(1)["modules cls"] == weights

    other = _eac_on(file_b.parent, tmp_path / "ship")
    with pytest.raises(MethodUnavailable) as err:
        other.encode(image, 1)
    assert str(weights) in str(err.value) and file_a.name in str(err.value) and str(file_b) in str(err.value)

    weights.write_bytes(weights.read_bytes() + b"x")  # a corrupt copy: the sidecar's SHA-256 catches it
    with pytest.raises(MethodUnavailable, match="does not match"):
        _eac_on(file_a.parent, tmp_path / "ship").encode(image, 1)
