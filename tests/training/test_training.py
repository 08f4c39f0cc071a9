"""The training loop: losses go down, resume is exact, frozen modules stay bit-identical."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bench.datasets.folder import ImageFolder
from bench.training.frozen import module_digests
from bench.training.loop import CropSampler, load_checkpoint, split_samples, train
from bench.training.recipe import FrozenModuleError, Recipe, Stage, StageSettings, TrainingError


class Toy(nn.Module):
    """An image-to-image net and a head, trained in two stages against a fixed 'task network'."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
        self.head = nn.Conv2d(3, 3, 1)


def toy_recipe(seed: int = 0, break_frozen: bool = False) -> tuple[Recipe, nn.Module]:
    torch.manual_seed(1234)  # the task network is a fixed, pretrained one
    task = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))  # frozen, with running statistics
    torch.manual_seed(seed)
    model = Toy()

    def stage_a(batch):
        noisy = batch.x + 0.01 * torch.randn_like(batch.x)  # randomness: resume must restore the RNG
        out = model.net(noisy)
        with torch.no_grad():
            ref = task(batch.x)
        return {"loss": nn.functional.mse_loss(task(out), ref), "mse": nn.functional.mse_loss(out, batch.x)}

    def stage_b(batch):
        if break_frozen:
            task.train()  # a forward pass in train mode updates BatchNorm's running statistics
        out = model.head(model.net(batch.x))
        return {"loss": nn.functional.mse_loss(task(out), task(batch.x).detach())}

    stages = [
        Stage("a", trains=["net"], frozen={"task": task}, loss=stage_a),
        Stage("b", trains=["head"], frozen={"task": task, "net": model.net}, loss=stage_b),
    ]

    def validate(images):
        return {"images": float(len(images)), "mean": float(sum(i.mean() for i in images) / len(images))}

    return Recipe(model, stages, validate), task


SETTINGS = {
    "a": {"lr": 1e-2, "batch_size": 2, "steps": 4, "milestones": [0.5], "gamma": 0.5},
    "b": {"lr": 1e-2, "batch_size": 2, "steps": 4},
}


@pytest.fixture()
def data(photo_folder):
    dataset = ImageFolder(photo_folder)
    train_samples, val_samples = split_samples(dataset.samples(), 1)
    return dataset, train_samples, [dataset.load(s) for s in val_samples]


def _run(data, out_dir, recipe, settings=SETTINGS, **kw):
    dataset, samples, val = data
    sampler = CropSampler(dataset, samples, crop=32, seed=7)
    return train(recipe, sampler, settings, out_dir, config={"seed": 7}, val_images=val, log_every=1, **kw)


def test_training_lowers_the_loss_on_a_tiny_batch(data, tmp_path):
    recipe, _ = toy_recipe()
    dataset, samples, _ = data
    batch = CropSampler(dataset, samples, crop=32, seed=1).batch(4, "cpu")
    torch.manual_seed(3)
    before = recipe.stages[0].loss(batch)["loss"].item()
    settings = {**SETTINGS, "a": {"lr": 1e-2, "batch_size": 4, "steps": 40}}
    _run(data, tmp_path, recipe, settings)
    torch.manual_seed(3)
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < 0.5 * before


def test_checkpoints_load_with_weights_only_and_carry_config_and_validation(data, tmp_path):
    recipe, _ = toy_recipe()
    result = _run(data, tmp_path, recipe)
    assert result.finished and result.steps == {"a": 4, "b": 4}
    for name in ("model.pt", "a.pt", "b.pt", "last.pt"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert ckpt["config"] == {"seed": 7}
    final = load_checkpoint(tmp_path / "model.pt")
    assert set(final["state_dict"]) == set(recipe.model.state_dict())
    assert final["validation"]["b"]["images"] == 1.0
    assert json.loads((tmp_path / "validation.json").read_text()) == final["validation"]
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["stage"] == "a"] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows if r["stage"] == "a"] == [1e-2, 1e-2, 5e-3, 5e-3]  # the milestone at half


@pytest.mark.parametrize("stop_after", [3, 4, 6])  # inside stage a, at the boundary, inside stage b
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data, tmp_path, stop_after):
    whole, _ = toy_recipe()
    _run(data, tmp_path / "whole", whole)
    first, _ = toy_recipe()
    stopped = _run(data, tmp_path / "cut", first, stop_after=stop_after)
    assert not stopped.finished
    torch.manual_seed(123)  # the resumed process starts from other random numbers
    second, _ = toy_recipe(seed=99)  # and from other initial weights: the checkpoint must win
    resumed = _run(data, tmp_path / "cut", second)
    assert resumed.finished and resumed.steps == {"a": 4, "b": 4}
    a, b = whole.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(tmp_path / "cut" / "model.pt")["validation"] == resumed.validation


def test_frozen_modules_are_verified_unchanged(data, tmp_path):
    recipe, task = toy_recipe()
    before_task = module_digests(task)
    _run(data, tmp_path, recipe)
    assert module_digests(task) == before_task
    assert not any(p.requires_grad for p in task.parameters())
    first = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    final = recipe.model.state_dict()
    # stage b froze net and trained head
    assert all(torch.equal(first[k], final[k]) for k in first if k.startswith("net."))
    assert not all(torch.equal(first[k], final[k]) for k in first if k.startswith("head."))


def test_a_frozen_module_that_changes_is_detected_with_a_clear_error(data, tmp_path):
    recipe, _ = toy_recipe(break_frozen=True)
    with pytest.raises(
        FrozenModuleError, match=r"stage 'b' declares these modules frozen.*task: weights changed: .*running_mean"
    ):
        _run(data, tmp_path, recipe)


def test_training_a_frozen_parameter_is_refused(data, tmp_path):
    recipe, task = toy_recipe()
    recipe.model.task = task  # the "frozen" task network is now also a submodule the stage trains
    recipe.stages[0].trains = ["net", "task"]
    with pytest.raises(
        FrozenModuleError, match=r"stage 'a' trains task.0.weight, a parameter of the frozen module 'task'"
    ):
        _run(data, tmp_path, recipe)


def test_resume_refuses_a_checkpoint_of_another_config(data, tmp_path):
    recipe, _ = toy_recipe()
    _run(data, tmp_path, recipe, stop_after=2)
    other = {**SETTINGS, "a": {**SETTINGS["a"], "lr": 0.5}}
    with pytest.raises(TrainingError, match="another config; use resume=false"):
        _run(data, tmp_path, toy_recipe()[0], other)
    assert _run(data, tmp_path, toy_recipe()[0], other, resume=False).finished


def test_stage_settings_are_checked():
    with pytest.raises(TrainingError, match="stage 'x': set steps or epochs"):
        StageSettings.from_config("x", {"lr": 1e-3, "batch_size": 2})
    with pytest.raises(TrainingError, match=r"unknown setting\(s\) \['learning_rate'\]"):
        StageSettings.from_config("x", {"learning_rate": 1e-3, "batch_size": 2, "steps": 1})
    with pytest.raises(TrainingError, match="milestones are fractions"):
        StageSettings.from_config("x", {"lr": 1e-3, "batch_size": 2, "steps": 1, "milestones": [4]})
    s = StageSettings.from_config("x", {"lr": 1e-4, "batch_size": 96, "epochs": 5, "milestones": [0.8]})
    total = s.total_steps(960)  # 10 steps an epoch
    assert total == 50 and s.lr_at(39, total) == 1e-4 and s.lr_at(40, total) == pytest.approx(1e-5)


def test_running_a_finished_run_again_trains_nothing_and_restores_model_pt(data, tmp_path):
    recipe, _ = toy_recipe()
    _run(data, tmp_path, recipe)
    weights = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    (tmp_path / "model.pt").unlink()  # e.g. killed between the last checkpoint and the final file
    again, _ = toy_recipe(seed=5)
    result = _run(data, tmp_path, again)
    assert result.finished and result.steps == {"a": 4, "b": 4}
    restored = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], restored[k]) for k in weights)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads only contend
    yield
    torch.set_num_threads(n)


def test_a_shipped_sidecar_names_no_path_of_the_training_machine(tmp_path):
    """What a run started from and was trained on is named by file name and SHA-256, never by where it lay."""
    import json

    from bench.training.export import sidecar_record

    ckpt = {
        "provenance": {
            "trained_on": {"backbone": {"file": "/data/ckpt/q1.pth", "sha256": "a" * 64}},
            "steps": {"joint": 3},
            "init_from": {"file": "/data/runs/m/rate-1/model.pt", "sha256": "b" * 64, "total_steps": 5},
            "init_encoder_from": {"file": "/data/ckpt/q1.pth", "sha256": "c" * 64},
        },
        "config": {
            "recipe": {"init_from": "/data/runs/m/rate-1/model.pt", "lambdas": [0.1], "tau": 1.0},
            "method": {"machine_task": {"model": "/data/weights/yolox_nano.onnx", "strides": [8, 16]}},
        },
    }
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    record = sidecar_record(ckpt, weights)
    assert "/data" not in json.dumps(record)
    assert record["training"]["recipe"] == {"init_from": "model.pt", "lambdas": [0.1], "tau": 1.0}
    assert record["architecture"]["machine_task"] == {"model": "yolox_nano.onnx", "strides": [8, 16]}
    assert record["training"]["init_from"]["sha256"] == "b" * 64 and record["total_steps"] == 8
    assert record["training"]["init_encoder_from"] == {"file": "q1.pth", "sha256": "c" * 64}
    assert record["trained_on"]["backbone"] == {"file": "q1.pth", "sha256": "a" * 64}


def test_a_weight_record_names_what_the_file_was_built_on():
    """The leaderboard's 'on <weights>': the frozen backbone, or the file a run started from, not its own chain."""
    from bench.training.weights import weights_built_on

    icmh_q2 = {
        "training": {"init_from": {"file": "model.pt", "total_steps": 1200}},
        "trained_on": {"backbone": {"file": "bmshj2018-hyperprior-mse-q2.pth"}, "network": {"file": "x.onnx"}},
    }
    latent_scalable = {"training": {"init_from": {"file": "bmshj2018-hyperprior-mse-q3.pth"}}, "trained_on": {}}
    sicmh = {"training": {"init_from": None, "init_encoder_from": {"file": "bmshj2018-hyperprior-mse-q1.pth"}}}
    for record in (icmh_q2, latent_scalable, sicmh):
        assert weights_built_on(record) == ["bmshj2018-hyperprior-mse"], record
    assert weights_built_on({"training": {"init_from": None}, "trained_on": {}}) == []


def test_total_steps_follow_the_chain_a_run_started_from():
    """A run fine-tuned from another run counts that run's steps too, however the chain was recorded."""
    from bench.training.weights import total_steps

    first = {"steps": {"predictor": 800, "adapter": 400}, "init_from": None}
    second = {"steps": {"predictor": 400, "adapter": 200}, "init_from": {"total_steps": total_steps(first)}}
    third = {"steps": {"predictor": 400, "adapter": 200}, "init_from": {"total_steps": total_steps(second)}}
    assert [total_steps(r) for r in (first, second, third)] == [1200, 1800, 2400]
    assert total_steps({"total_steps": 8465, "steps": 7465}) == 8465 and total_steps({}) is None
