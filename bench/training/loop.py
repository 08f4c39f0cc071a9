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
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.io.files import atomic_torch_save
from bench.training.frozen import freeze, trained_parameters, verify_frozen
from bench.training.recipe import Batch, Crop, Recipe, StageSettings, TrainingError

if TYPE_CHECKING:
    import torch

    from bench.datasets.base import ImageDataset, Sample

log = logging.getLogger("bench.train")

CHECKPOINT_FORMAT = "hmc-bench-train/1"


# --- what a method provides ------------------------------------------------------


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
                log.info("%s %d/%d %s (%.2f steps/s)", stage.name, step, total, format_terms(logged), rate)
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
            log.info("validation after %s: %s", stage.name, format_terms(result.validation[stage.name]))
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


def format_terms(terms: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in terms.items())


# --- the command -----------------------------------------------------------------
