"""``python -m bench train method=<m> dataset=<d> task=<t> rate=<r>``: build a method's recipe from config, train it,
and record how (provenance).
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.training.loop import CropSampler, train

if TYPE_CHECKING:
    from omegaconf import DictConfig

from bench.training.loop import TrainResult, format_terms, split_samples
from bench.training.recipe import TrainingError

log = logging.getLogger("bench.train")


def run_provenance(
    cfg: DictConfig, method: Any, tasks: Sequence[Any], dataset: Any, n_train: int, n_val: int, device: str
) -> dict[str, Any]:
    """What a checkpoint says about how it was made: method, rate, data, schedule, device, start, code."""
    import torch
    from omegaconf import OmegaConf

    from bench.provenance import git_state, package_versions

    stages = OmegaConf.to_container(cfg.recipe.get("stages") or {}, resolve=True)
    init = cfg.recipe.get("init_from")
    start = None
    if init:
        path = Path(os.path.expanduser(str(init)))
        start = {"file": str(init)}
        if path.is_file():
            from bench.io.digests import file_sha256
            from bench.training.weights import load_trained, total_steps

            _, before = load_trained(path)  # a sidecar, or a run's provenance (its own steps and its own start)
            start.update({"sha256": file_sha256(path), "total_steps": total_steps(before) or 0})
    encoder_init = cfg.recipe.get("init_encoder_from")  # SICMH: only its encoder starts from these weights
    encoder_start = None
    if encoder_init:
        from bench.io.digests import file_sha256

        path = Path(os.path.expanduser(str(encoder_init)))
        encoder_start = {"file": str(encoder_init), **({"sha256": file_sha256(path)} if path.is_file() else {})}
    return {
        "origin": "local",
        "method": method.name,
        "class": f"{type(method).__module__}.{type(method).__qualname__}",
        "rate": cfg.rate if cfg.get("rate") is not None else method.rates[0],
        "tasks": [t.name for t in tasks],
        "data": {
            "dataset": dataset.name,
            "train_images": n_train,
            "val_images": n_val,
            "crop": int(cfg.crop),
            "seed": int(cfg.seed),
        },
        "schedule": stages,
        "device": device,
        "threads": torch.get_num_threads(),
        "init_from": start,
        "init_encoder_from": encoder_start,
        "code": git_state(),
        "versions": package_versions(),
    }


def train_job(cfg: DictConfig) -> TrainResult:
    """``python -m bench train``: build the method's recipe from config and train it."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from bench.datasets.base import DatasetUnavailable
    from bench.devices import resolve_device
    from bench.methods.base import MethodUnavailable
    from bench.running.app import UserError, build_tasks

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    random.seed(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    method = instantiate(cfg.method)
    if not hasattr(method, "training_recipe"):
        raise UserError(f"method {method.name!r} has no training recipe (only learned human-machine methods train)")
    if cfg.get("recipe") is None:
        raise UserError(f"no recipe config for method {method.name!r}: add conf/recipe/{method.name}.yaml")
    if hasattr(method, "device"):
        method.device = device
    rate = cfg.rate if cfg.get("rate") is not None else (method.rates[0] if len(method.rates) == 1 else None)
    if rate is None:
        raise UserError(f"say which rate point to train: rate=<one of {method.rates}>")
    dataset = instantiate(cfg.dataset)
    try:
        samples = dataset.samples()
    except DatasetUnavailable as exc:
        raise UserError(str(exc)) from exc
    if cfg.get("limit") is not None:
        samples = samples[: int(cfg.limit)]
    try:
        train_samples, val_samples = split_samples(samples, int(cfg.val_samples))
    except TrainingError as exc:
        raise UserError(str(exc)) from exc
    tasks = [t.task for t in build_tasks(cfg)]
    for task in tasks:  # task networks train on the run's device ("auto" could pick another)
        for attr in ("device_name", "device"):
            if isinstance(getattr(type(task), attr, None), property):
                continue
            if isinstance(getattr(task, attr, None), str):
                setattr(task, attr, device)
                break
    settings = OmegaConf.to_container(cfg.recipe, resolve=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        recipe = method.training_recipe(rate, tasks, settings, device)
        for task in tasks:  # the frozen task networks the loss ran through
            recipe.trained_on.update({f"{role} {task.name}": f for role, f in task.weight_files().items()})
        sampler = CropSampler(dataset, train_samples, int(cfg.crop), seed=int(cfg.seed))
        val_images = [dataset.load(s) for s in val_samples]
        provenance = run_provenance(cfg, method, tasks, dataset, len(train_samples), len(val_samples), device)
        log.info(
            "training %s (rate %s) on %s: %d training / %d validation images, device %s -> %s",
            method.name,
            rate,
            dataset.name,
            len(train_samples),
            len(val_samples),
            device,
            cfg.out_dir,
        )
        result = train(
            recipe,
            sampler,
            settings.get("stages", {}),
            cfg.out_dir,
            config=config,
            val_images=val_images,
            device=device,
            resume=bool(cfg.resume),
            checkpoint_every=int(cfg.checkpoint_every),
            log_every=int(cfg.log_every),
            provenance=provenance,
        )
    except (TrainingError, MethodUnavailable) as exc:
        raise UserError(str(exc)) from exc
    print(f"{method.name} rate {rate}: {'finished' if result.finished else 'stopped'}; steps {result.steps}")
    for stage, figures in result.validation.items():
        print(f"  validation after {stage}: {format_terms(figures)}")
    print(f"checkpoint: {Path(cfg.out_dir) / 'model.pt'}")
    return result


def hydra_train() -> None:
    """The Hydra entry point (config ``conf/train.yaml``)."""
    import hydra

    from bench.running.app import UserError

    @hydra.main(version_base="1.3", config_path="pkg://bench.conf", config_name="train")
    def _main(cfg: DictConfig) -> None:
        try:
            train_job(cfg)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    _main()
