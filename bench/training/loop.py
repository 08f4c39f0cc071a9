"""Training learned methods: ``python -m bench train method=<m> dataset=<d> task=<t> rate=<r>``.

The loop is generic; a method supplies its recipe. This is the interface
learned methods implement (``methods/human_machine/eac.py`` is a complete example).

The method side
---------------
A trainable method has one more method::

    def training_recipe(self, rate, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Recipe

``rate`` is the rate point being trained (one run per rate point; sweep them
with ``-m rate=1,2,3``), ``tasks`` the harness tasks of the run (``task=...``;
their torchvision networks are differentiable: ``task.network``,
``logits(x)``; ``bench.tasks.losses`` turns one into a loss), ``settings``
the resolved ``recipe`` config group (``conf/recipe/<method>.yaml``: λ per
rate, temperatures, and one entry per stage under ``stages``, below) and
``device`` the torch device (``auto`` already resolved). It returns::

    Recipe(
        model=nn.Module,          # what is trained and saved: checkpoints hold model.state_dict()
        stages=[Stage(...), ...], # run in order
        validate=fn or None,      # fn(list of H x W x 3 uint8 held-out images) -> {name: float}
    )

    Stage(
        name="predictor",                     # its hyper-parameters are settings["stages"]["predictor"]
        trains=["predictors.detection"],      # submodules of model whose parameters this stage optimises
                                              # ("" = the whole model)
        frozen={"backbone": net, "task": tn}, # modules that must not change; verified (see below)
        loss=fn,                              # fn(Batch) -> {"loss": scalar tensor, other named terms...}
        aux_loss=None,                        # fn() -> tensor: CompressAI's entropy-bottleneck aux loss;
                                              # its "quantiles" get their own Adam (aux_lr)
    )

``Batch.x`` is a ``B x 3 x crop x crop`` float tensor in [0, 1] on the
device (random crops of training images), ``Batch.crops`` says where each
crop came from (sample id, top, left, size) for methods that crop labels.
At the start of a stage the trained submodules are put in ``train()`` mode
and the frozen modules in ``eval()``; a loss that needs another mode sets it.
``validate`` runs at the end of every stage on held-out images (with real
entropy coding where the method has it: encode, count the bytes, decode);
its figures go into the checkpoints and ``validation.json``.

Stage hyper-parameters (``settings["stages"][<stage name>]``)::

    optimizer: adam      # adam | adamw | sgd
    lr: 1.0e-4
    batch_size: 8
    epochs: 5            # or steps: N (steps wins); an epoch = ceil(training images / batch_size) steps
    milestones: [0.8]    # fractions of the stage where lr *= gamma (the paper's "1e-4 for 4 epochs, 1e-5 for 1")
    gamma: 0.1
    weight_decay: 0.0
    clip_max_norm: null  # gradient clipping (CompressAI's train.py uses 1.0)
    aux_lr: 1.0e-3       # only with aux_loss

What the loop guarantees
------------------------
- Frozen means frozen: before a stage, every parameter of ``frozen`` gets
  ``requires_grad=False`` and a digest of every tensor (parameters and
  buffers) is taken; a stage whose ``trains`` reaches into a frozen module is
  refused (:class:`FrozenModuleError`), and after the stage every tensor must
  be bit-identical and gradient-free, else :class:`FrozenModuleError` names
  the module and the tensors that changed (e.g. BatchNorm statistics updated
  by a forward pass in train mode).
- Checkpoints: ``<out_dir>/last.pt`` every ``checkpoint_every`` steps and at
  each stage end (model, optimisers, RNG states, progress); ``<out_dir>/<stage>.pt``
  after each stage and ``<out_dir>/model.pt`` at the end: ``{"state_dict",
  "config", "validation", "stage"}``. All load with
  ``torch.load(path, weights_only=True)``; a method's ``checkpoints`` config
  points at ``model.pt``.
- Resume: run the same command again; training continues from ``last.pt``
  and ends with the same weights as an uninterrupted run (CPU; the data order
  and random numbers are restored). A checkpoint made with another config is
  refused unless ``resume=false``.
- ``history.jsonl``: the loss terms and learning rate every ``log_every`` steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.io.files import atomic_torch_save

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from bench.datasets.base import ImageDataset, Sample

log = logging.getLogger("bench.train")

CHECKPOINT_FORMAT = "hmc-bench-train/1"
OPTIMIZERS = ("adam", "adamw", "sgd")


class TrainingError(RuntimeError):
    """Training cannot go on (bad settings, a non-finite loss, an unusable checkpoint)."""


class FrozenModuleError(TrainingError):
    """A module a stage declares frozen was trained, changed or received gradients."""


# --- what a method provides ------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """Where one training crop came from (for methods that crop labels with the image)."""

    sample: str
    top: int
    left: int
    height: int
    width: int


@dataclass
class Batch:
    """Random crops of training images: ``x`` is ``B x 3 x H x W`` float in [0, 1] on the device."""

    x: torch.Tensor
    crops: list[Crop]


@dataclass
class Stage:
    """One training stage: what it trains, what must stay frozen, what it minimises."""

    name: str
    trains: Sequence[str]
    frozen: Mapping[str, torch.nn.Module]
    loss: Callable[[Batch], Mapping[str, torch.Tensor]]
    aux_loss: Callable[[], torch.Tensor] | None = None


@dataclass
class Recipe:
    """A method's training: the model checkpoints hold, its stages, and held-out validation.

    ``trained_on`` names the frozen weights the trained model depends on (``{"backbone": path}``; a
    ``generated:<digest>`` string for weights made in memory): checkpoints record their SHA-256, so a
    trained module is never loaded onto other weights (``bench.training.weights.check_trained_on``).
    """

    model: torch.nn.Module
    stages: list[Stage]
    validate: Callable[[list[np.ndarray]], Mapping[str, float]] | None = None
    trained_on: dict[str, Path | str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSettings:
    """Hyper-parameters of one stage (``settings["stages"][name]``)."""

    lr: float
    batch_size: int
    epochs: float | None = None
    steps: int | None = None
    optimizer: str = "adam"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    weight_decay: float = 0.0
    clip_max_norm: float | None = None
    aux_lr: float = 1e-3

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any] | None) -> StageSettings:
        if cfg is None:
            raise TrainingError(f"stage {name!r}: no settings (add stages.{name} to the recipe config)")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise TrainingError(f"stage {name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
        for key in ("lr", "batch_size"):
            if cfg.get(key) is None:
                raise TrainingError(f"stage {name!r}: {key} is not set")
        if cfg.get("steps") is None and cfg.get("epochs") is None:
            raise TrainingError(f"stage {name!r}: set steps or epochs")
        s = cls(**{**cfg, "milestones": tuple(float(m) for m in cfg.get("milestones") or ())})
        if s.optimizer not in OPTIMIZERS:
            raise TrainingError(f"stage {name!r}: optimizer must be one of {OPTIMIZERS}, not {s.optimizer!r}")
        if s.batch_size < 1 or s.lr <= 0:
            raise TrainingError(f"stage {name!r}: batch_size must be >= 1 and lr > 0 (got {s.batch_size}, {s.lr})")
        if any(not 0 < m < 1 for m in s.milestones):
            raise TrainingError(f"stage {name!r}: milestones are fractions of the stage in (0, 1), got {s.milestones}")
        return s

    def total_steps(self, n_images: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(float(self.epochs or 0) * math.ceil(n_images / self.batch_size)))

    def lr_at(self, step: int, total: int) -> float:
        """The step-wise schedule: ``lr * gamma ** (milestones passed)``."""
        passed = sum(1 for m in self.milestones if step >= round(m * total))
        return self.lr * self.gamma**passed


# --- data -----------------------------------------------------------------------


class CropSampler:
    """Random ``crop x crop`` batches from a list of samples; the order comes from a seeded generator.

    Images smaller than the crop are edge-padded. Decoded images are kept in a
    small LRU cache (``cache_images``).
    """

    def __init__(
        self, dataset: ImageDataset, samples: Sequence[Sample], crop: int, seed: int = 0, cache_images: int = 64
    ):
        import torch

        if not samples:
            raise TrainingError(f"no training images in {dataset.name!r}")
        if crop < 16:
            raise TrainingError(f"crop must be at least 16 pixels, got {crop}")
        self.dataset = dataset
        self.samples = list(samples)
        self.crop = int(crop)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.cache_images = int(cache_images)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def image(self, sample: Sample) -> np.ndarray:
        if sample.id in self._cache:
            self._cache.move_to_end(sample.id)
            return self._cache[sample.id]
        img = self.dataset.load(sample)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise TrainingError(f"training image {sample.id!r}: expected H x W x 3 uint8, got {img.shape} {img.dtype}")
        if self.cache_images > 0:
            self._cache[sample.id] = img
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return img

    def batch(self, size: int, device: str) -> Batch:
        import torch

        g = self.generator
        picks = torch.randint(len(self.samples), (size,), generator=g).tolist()
        crops, arrays = [], []
        for k in picks:
            sample = self.samples[k]
            img = self.image(sample)
            h, w = img.shape[:2]
            if h < self.crop or w < self.crop:
                img = np.pad(img, ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0)), mode="edge")
                h, w = img.shape[:2]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=g))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=g))
            arrays.append(img[top : top + self.crop, left : left + self.crop])
            crops.append(Crop(sample.id, top, left, self.crop, self.crop))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)
        return Batch(x.to(device), crops)


def split_samples(samples: Sequence[Sample], val_samples: int) -> tuple[list[Sample], list[Sample]]:
    """Held-out split: the last ``val_samples`` samples validate, the rest train."""
    samples = list(samples)
    if val_samples < 0:
        raise TrainingError(f"val_samples must be >= 0, got {val_samples}")
    if val_samples >= len(samples):
        raise TrainingError(f"val_samples={val_samples} leaves no training images (the dataset has {len(samples)})")
    cut = len(samples) - val_samples
    return samples[:cut], samples[cut:]


# --- frozen modules -------------------------------------------------------------


def module_digests(module: torch.nn.Module) -> dict[str, str]:
    """SHA-256 of every parameter and buffer, by name: equal digests = bit-identical weights."""
    import torch

    out = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def freeze(frozen: Mapping[str, torch.nn.Module]) -> dict[str, dict[str, str]]:
    """Turn off gradients of ``frozen`` and return their digests (to verify after the stage)."""
    for module in frozen.values():
        for p in module.parameters():
            p.requires_grad_(False)
    return {name: module_digests(module) for name, module in frozen.items()}


def verify_frozen(stage: str, frozen: Mapping[str, torch.nn.Module], digests: Mapping[str, Mapping[str, str]]) -> None:
    """Raise :class:`FrozenModuleError` unless every frozen module is bit-identical and gradient-free."""
    problems = []
    for name, module in frozen.items():
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        with_grad = [n for n, p in module.named_parameters() if p.grad is not None and bool(p.grad.ne(0).any())]
        now = module_digests(module)
        changed = [n for n, d in now.items() if digests.get(name, {}).get(n) != d]
        if trainable:
            problems.append(f"{name}: requires_grad was turned back on for {_few(trainable)}")
        if with_grad:
            problems.append(f"{name}: gradients reached {_few(with_grad)}")
        if changed:
            problems.append(f"{name}: weights changed: {_few(changed)}")
    if problems:
        raise FrozenModuleError(f"stage {stage!r} declares these modules frozen, but " + "; ".join(problems))


def _few(names: Sequence[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def trained_parameters(
    model: torch.nn.Module, stage: Stage
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(main, aux) parameters of the submodules ``stage.trains``; aux = CompressAI's ``quantiles``."""
    seen: set[int] = set()
    main, aux = [], []
    frozen_ids = {id(p): name for name, m in stage.frozen.items() for p in m.parameters()}
    if not stage.trains:
        raise TrainingError(f"stage {stage.name!r} trains nothing (trains is empty)")
    for sub in stage.trains:
        try:
            module = model.get_submodule(sub) if sub else model
        except AttributeError as exc:
            raise TrainingError(f"stage {stage.name!r}: the model has no submodule {sub!r} ({exc})") from None
        for pname, p in module.named_parameters():
            if id(p) in frozen_ids:
                raise FrozenModuleError(
                    f"stage {stage.name!r} trains {sub or 'the model'}.{pname}, a parameter of the frozen module "
                    f"{frozen_ids[id(p)]!r}"
                )
            if id(p) in seen:
                continue
            seen.add(id(p))
            (aux if pname.endswith("quantiles") else main).append(p)
    if not main:
        raise TrainingError(f"stage {stage.name!r}: {list(stage.trains)} have no parameters to train")
    return main, aux


def _optimizer(kind: str, params: list[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import torch

    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


# --- checkpoints -----------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint, loaded with ``weights_only=True`` (no pickled code)."""
    import torch

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a training checkpoint of this harness (format {CHECKPOINT_FORMAT})")
    return obj


def trained_on_record(files: Mapping[str, Path | str]) -> dict[str, dict[str, str]]:
    """``{role: {"file", "sha256"}}`` of the weights a model was trained on (``generated:`` ones as they are)."""
    from bench.running.keys import weight_digests

    digests = weight_digests(files)
    return {role: {"file": str(f), "sha256": digests[role]} for role, f in files.items()}


def config_digest(config: Mapping[str, Any]) -> str:
    """What must match for a resume: the config without the keys that do not change the result."""
    ignored = {"resume", "progress", "threads", "device", "out_dir", "checkpoint_every", "log_every"}
    kept = {k: v for k, v in config.items() if k not in ignored}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """What a finished (or stopped) training run produced."""

    out_dir: Path
    steps: dict[str, int] = field(default_factory=dict)
    last_terms: dict[str, dict[str, float]] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    finished: bool = False


def train(
    recipe: Recipe,
    sampler: CropSampler,
    stage_settings: Mapping[str, Any],
    out_dir: str | os.PathLike,
    config: Mapping[str, Any] | None = None,
    val_images: Sequence[np.ndarray] = (),
    device: str = "cpu",
    resume: bool = True,
    checkpoint_every: int = 100,
    log_every: int = 10,
    stop_after: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Run ``recipe``'s stages in order; checkpoint, verify frozen modules, validate, resume.

    ``stage_settings`` maps stage name -> :class:`StageSettings` fields;
    ``config`` is the resolved run config saved with every checkpoint (and
    compared on resume). ``stop_after`` ends the run after that many steps
    in this call (a checkpoint is written): an interruption, for tests.
    Every checkpoint carries ``provenance``: the SHA-256 of the weights the
    model was trained on (``recipe.trained_on``; a resume onto other weights is
    refused), the steps of each stage, and what the caller adds (data, device).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(config or {})
    digest = config_digest({**config, "stages": {k: dict(v) for k, v in stage_settings.items()}})
    settings = {s.name: StageSettings.from_config(s.name, stage_settings.get(s.name)) for s in recipe.stages}
    names = [s.name for s in recipe.stages]
    if len(set(names)) != len(names):
        raise TrainingError(f"stage names must be unique: {names}")
    model = recipe.model.to(device)
    result = TrainResult(out)
    history: list[dict[str, Any]] = []
    start_stage, start_step = 0, 0
    saved: dict[str, Any] = {}
    last = out / "last.pt"
    record: dict[str, Any] = {**dict(provenance or {}), "trained_on": trained_on_record(recipe.trained_on)}
    if resume and last.is_file():
        saved = load_checkpoint(last)
        if saved.get("config_digest") != digest:
            raise TrainingError(
                f"{last} was written by a run with another config; use resume=false (starts over) or another out_dir"
            )
        was = {k: v.get("sha256") for k, v in (saved.get("provenance") or {}).get("trained_on", {}).items()}
        now = {k: v["sha256"] for k, v in record["trained_on"].items()}
        if was != now:
            changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            raise TrainingError(
                f"{last} was trained on other weights ({', '.join(changed)} changed since); use resume=false "
                "(starts over) or another out_dir"
            )
        model.load_state_dict(saved["state_dict"])
        start_stage, start_step = int(saved["progress"]["stage"]), int(saved["progress"]["step"])
        result.validation = dict(saved.get("validation", {}))
        result.steps = dict(saved["progress"].get("steps", {}))
        torch.set_rng_state(saved["rng"]["torch"])
        if saved["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        sampler.generator.set_state(saved["rng"]["data"])
        log.info("resuming from %s: stage %s, step %d", last, names[min(start_stage, len(names) - 1)], start_step)
    steps_this_call = 0

    def stamped() -> dict[str, Any]:
        return {**record, "steps": dict(result.steps)}

    def checkpoint(stage_index: int, step: int, frozen_digests: Any, opt: Any, aux_opt: Any) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": config,
            "provenance": stamped(),
            "config_digest": digest,
            "state_dict": model.state_dict(),
            "validation": result.validation,
            "progress": {"stage": stage_index, "step": step, "steps": result.steps},
            "frozen_digests": frozen_digests,
            "optimizer": opt.state_dict() if opt is not None else None,
            "aux_optimizer": aux_opt.state_dict() if aux_opt is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "data": sampler.generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }
        atomic_torch_save(state, last)
        with open(out / "history.jsonl", "a") as fh:
            for row in history:
                fh.write(json.dumps(row) + "\n")
        history.clear()

    for index in range(start_stage, len(recipe.stages)):
        stage = recipe.stages[index]
        cfg = settings[stage.name]
        total = cfg.total_steps(len(sampler.samples))
        resuming_here = bool(saved) and index == start_stage and start_step > 0
        fresh_digests = freeze(stage.frozen)
        digests = saved["frozen_digests"] if resuming_here else fresh_digests
        main, aux = trained_parameters(model, stage)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in [*main, *aux]:
            p.requires_grad_(True)
        model.eval()
        for sub in stage.trains:
            (model.get_submodule(sub) if sub else model).train()
        for module in stage.frozen.values():
            module.eval()
        opt = _optimizer(cfg.optimizer, main, cfg.lr, cfg.weight_decay)
        aux_opt = _optimizer("adam", aux, cfg.aux_lr, 0.0) if (stage.aux_loss is not None and aux) else None
        if resuming_here:
            opt.load_state_dict(saved["optimizer"])
            if aux_opt is not None and saved.get("aux_optimizer") is not None:
                aux_opt.load_state_dict(saved["aux_optimizer"])
        step = start_step if resuming_here else 0
        log.info("stage %s: %d steps of batch %d, lr %g", stage.name, total, cfg.batch_size, cfg.lr)
        t0 = time.perf_counter()
        while step < total:
            if stop_after is not None and steps_this_call >= stop_after:
                checkpoint(index, step, digests, opt, aux_opt)
                return result
            lr = cfg.lr_at(step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = sampler.batch(cfg.batch_size, device)
            opt.zero_grad(set_to_none=True)
            terms = stage.loss(batch)
            if "loss" not in terms:
                raise TrainingError(f"stage {stage.name!r}: the loss returned {list(terms)}, no 'loss' term")
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(f"stage {stage.name!r}, step {step}: the loss is {float(loss)}")
            loss.backward()
            if cfg.clip_max_norm:
                torch.nn.utils.clip_grad_norm_(main, cfg.clip_max_norm)
            opt.step()
            logged = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in terms.items()}
            if aux_opt is not None:
                aux_opt.zero_grad(set_to_none=True)
                aux_loss = stage.aux_loss()
                aux_loss.backward()
                aux_opt.step()
                logged["aux_loss"] = float(aux_loss.detach())
            step += 1
            steps_this_call += 1
            result.steps[stage.name] = step
            result.last_terms[stage.name] = logged
            if step % max(1, log_every) == 0 or step == total:
                history.append({"stage": stage.name, "step": step, "lr": lr, **logged})
                rate = step / max(time.perf_counter() - t0, 1e-9)
                log.info("%s %d/%d %s (%.2f steps/s)", stage.name, step, total, _fmt(logged), rate)
            if step % max(1, checkpoint_every) == 0 and step < total:
                checkpoint(index, step, digests, opt, aux_opt)
        for p in [*main, *aux]:
            p.grad = None
        verify_frozen(stage.name, stage.frozen, digests)
        if recipe.validate is not None and len(val_images):
            model.eval()
            with torch.no_grad():
                figures = recipe.validate(list(val_images))
            result.validation[stage.name] = {k: float(v) for k, v in figures.items()}
            log.info("validation after %s: %s", stage.name, _fmt(result.validation[stage.name]))
        final = {"format": CHECKPOINT_FORMAT, "config": config, "validation": result.validation, "stage": stage.name}
        final["provenance"] = stamped()
        atomic_torch_save({**final, "state_dict": model.state_dict()}, out / f"{stage.name}.pt")
        checkpoint(index + 1, 0, None, None, None)
        saved = {}
    final = {"format": CHECKPOINT_FORMAT, "config": config, "validation": result.validation, "stage": names[-1]}
    final["provenance"] = stamped()
    atomic_torch_save({**final, "state_dict": model.state_dict()}, out / "model.pt")
    (out / "validation.json").write_text(json.dumps(result.validation, indent=2, sort_keys=True))
    result.finished = True
    return result


def _fmt(terms: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in terms.items())


# --- the command -----------------------------------------------------------------


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
            from bench.training.weights import load_trained

            _, before = load_trained(path)
            steps = before.get("total_steps")
            if steps is None:  # a run's provenance counts steps per stage; a codec export's sidecar has a number
                steps = before.get("steps") or 0
                steps = sum(steps.values()) if isinstance(steps, Mapping) else steps
            start.update({"sha256": file_sha256(path), "total_steps": int(steps or 0)})
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
        print(f"  validation after {stage}: {_fmt(figures)}")
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
