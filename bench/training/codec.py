"""``python -m bench train-codec``: train a CompressAI image codec for one rate point.

The recipe is CompressAI's ``examples/train.py`` made resumable: the zoo
architecture at a quality (which fixes N/M), ``RateDistortionLoss`` (MSE,
lambda = CompressAI's lambda for that quality unless given), Adam on the
network, a second Adam on the entropy bottleneck's quantiles driven by the
auxiliary loss, gradient clipping, and a learning-rate drop
(``ReduceLROnPlateau`` on the validation loss by default, as the example
does; or fixed drops at fractions of the run).

A run lives in ``out_dir``: ``last.pt`` (model, both optimizers, the LR state,
the step and the RNG state: running the same command again continues from
it), ``best.pt`` (the checkpoint with the lowest validation loss),
``history.jsonl`` (one line per validation: the RD loss, and bpp / PSNR of
real ``compress``/``decompress`` bytes on the validation images) and
``train.log``. A checkpoint is written every so many steps and minutes, at the
end, and on SIGTERM/SIGINT. The batches depend only on ``(seed, step)``
(:mod:`bench.training.data`), so on one CPU configuration an interrupted and
resumed run takes the same steps as an uninterrupted one.

``python -m bench train-codec export run_dir=... out_dir=...`` writes the
shippable fp16 weights (:mod:`bench.training.codec_export`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.io.files import atomic_torch_save
from bench.training.data import CropSampler, TrainDataError, list_images, scan_images

log = logging.getLogger("bench.train")

#: CompressAI's training lambdas (MSE) for the zoo qualities 1..8
ZOO_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}
#: config keys that define the network and its objective: a resumed run must not change them
MATERIAL_KEYS = ("model", "quality", "N", "M", "metric", "lmbda", "seed")
CHECKPOINT_FORMAT = 1


class TrainError(RuntimeError):
    """A training run that cannot start or go on; printed as one message."""


# --- config -----------------------------------------------------------------------


def load_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``conf/train_codec.yaml`` with Hydra overrides applied, resolved to plain Python."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            cfg = compose(config_name="train_codec", overrides=list(overrides))
        out = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise TrainError(f"bad train-codec arguments {list(overrides)}: {exc}") from exc
    return check_config(out)


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill the lambda from the quality and reject values that cannot train."""
    from bench.methods.learned.compressai import QUALITIES

    arch = cfg["model"]
    if arch not in QUALITIES:
        raise TrainError(f"model={arch!r} is not a CompressAI zoo image architecture; known: {list(QUALITIES)}")
    if cfg["quality"] not in QUALITIES[arch]:
        q = QUALITIES[arch]
        raise TrainError(f"quality={cfg['quality']!r}: {arch} has qualities {q.start}..{q.stop - 1}")
    if cfg["metric"] != "mse":
        raise TrainError(f"metric={cfg['metric']!r}: only mse training is implemented")
    if cfg["lmbda"] is None:
        cfg["lmbda"] = ZOO_LAMBDAS[cfg["quality"]]
    if not (isinstance(cfg["lmbda"], (int, float)) and cfg["lmbda"] > 0):
        raise TrainError(f"lmbda must be a positive number, got {cfg['lmbda']!r}")
    for key in ("patch_size", "batch_size", "steps"):
        if not (isinstance(cfg[key], int) and cfg[key] > 0):
            raise TrainError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if cfg["patch_size"] % 64:
        raise TrainError(f"patch_size={cfg['patch_size']} must be a multiple of 64 (six stride-2 stages)")
    if cfg["lr_drop"]["mode"] not in ("plateau", "steps", "none"):
        raise TrainError(f"lr_drop.mode must be plateau, steps or none, not {cfg['lr_drop']['mode']!r}")
    if isinstance(cfg["data"], str):
        cfg["data"] = [cfg["data"]]
    if isinstance(cfg["val_data"], str):
        cfg["val_data"] = [cfg["val_data"]]
    if not cfg["data"]:
        raise TrainError("no training images: give data=[folder,...]")
    return cfg


# --- model ------------------------------------------------------------------------


def build_model(cfg: dict[str, Any]) -> torch.nn.Module:
    """The zoo architecture at ``quality`` (untrained), or with explicit N/M for tiny test models."""
    from bench.methods.learned.compressai import import_compressai

    import_compressai()
    from compressai.zoo import image_models
    from compressai.zoo.image import cfgs, model_architectures

    if cfg["N"] is None and cfg["M"] is None:
        return image_models[cfg["model"]](quality=cfg["quality"], metric=cfg["metric"], pretrained=False)
    n, m = cfgs[cfg["model"]][cfg["quality"]][:2]
    n = cfg["N"] if cfg["N"] is not None else n
    m = cfg["M"] if cfg["M"] is not None else m
    return model_architectures[cfg["model"]](N=n, M=m)


def parameter_groups(net: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The network's parameters and the entropy bottleneck's quantiles (trained by the aux loss)."""
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return main, aux


def resolve_device(device: str) -> torch.device:
    """The torch device to train on (``auto`` as :func:`bench.devices.resolve_device` resolves it)."""
    from bench.devices import resolve_device as resolved

    return torch.device(resolved(device))


# --- validation --------------------------------------------------------------------


def validate(
    net: torch.nn.Module, criterion: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device
) -> dict[str, float]:
    """RD loss of the forward pass, and bpp / PSNR of real entropy-coded bytes, averaged over ``images``.

    bpp counts the bytes ``compress`` writes (eval_model's convention: the strings, no container header);
    PSNR is ``bench.metrics.image.psnr`` of the decoded 8-bit image, as the harness measures it.
    """
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    from bench.methods.learned.compressai import MIN_DIV, to_tensor, to_uint8
    from bench.metrics.image import bits_per_pixel, psnr

    was_training = net.training
    net.eval()
    sums = {"loss": 0.0, "bpp_loss": 0.0, "mse_loss": 0.0, "bpp": 0.0, "psnr": 0.0}
    try:
        with torch.no_grad():  # not inference_mode: the CDF buffers must stay ordinary tensors
            net.update(force=True)
            for image in images:
                height, width = image.shape[:2]
                pad, unpad = compute_padding(height, width, min_div=MIN_DIV)
                x = F.pad(to_tensor(image).to(device), pad, mode="constant", value=0)
                rd = criterion(net(x), x)
                out = net.compress(x)
                num_bytes = sum(len(s) for strings in out["strings"] for s in strings)
                x_hat = F.pad(net.decompress(out["strings"], out["shape"])["x_hat"], unpad)
                sums["loss"] += float(rd["loss"])
                sums["bpp_loss"] += float(rd["bpp_loss"])
                sums["mse_loss"] += float(rd["mse_loss"])
                sums["bpp"] += bits_per_pixel(num_bytes, height, width)
                sums["psnr"] += psnr(image, to_uint8(x_hat))
    finally:
        net.train(was_training)
    return {k: v / len(images) for k, v in sums.items()}


# --- checkpoints ------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint (``last.pt``/``best.pt``), read without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path} is not a train-codec checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The material keys on which a resumed run's config differs from the checkpoint's."""
    return [
        f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
        for k in MATERIAL_KEYS
        if saved.get(k) != current.get(k)
    ]


def describe_init(path: str | os.PathLike, ckpt: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run starts from: the file, its architecture, quality, lambda and steps (with its own start's).

    ``total_steps`` counts the whole chain (e.g. q2 fine-tuned from q1), so a shipped model says how much
    training it has really had. ``ckpt``: the ``.pt`` checkpoint already read from ``path``, if it was."""
    from bench.training.weights import sidecar_of

    p = Path(os.path.expanduser(str(path)))
    record: dict[str, Any] = {"file": p.name}
    if p.suffix == ".pt":
        ckpt = ckpt if ckpt is not None else read_checkpoint(p)
        cfg, earlier = ckpt["config"], ckpt.get("init") or {}
        record.update(arch=cfg["model"], quality=cfg["quality"], lmbda=cfg["lmbda"], steps=ckpt["step"])
        record["total_steps"] = ckpt["step"] + int(earlier.get("total_steps", 0))
    elif sidecar_of(p).is_file():
        side = json.loads(sidecar_of(p).read_text())
        record.update({k: side.get(k) for k in ("arch", "quality", "lmbda", "steps")})
        record["total_steps"] = side.get("total_steps", side.get("steps"))
    return record


def _load_init_weights(net: torch.nn.Module, path: str) -> dict[str, Any]:
    """Start from another run's weights (e.g. a lower-lambda model), fresh optimizers; returns what they are."""
    from bench.training.weights import read_state_dict

    p = Path(os.path.expanduser(path))
    ckpt = read_checkpoint(p) if p.suffix == ".pt" else None
    if ckpt is not None:
        state = ckpt["model"]
    else:
        state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(p).items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise TrainError(f"init_from={path}: weights do not fit this model: {exc}") from exc
    return describe_init(p, ckpt)


# --- the run ----------------------------------------------------------------------


class Trainer:
    """One training run in ``cfg['out_dir']``: build or resume, then step until done or stopped."""

    def __init__(self, cfg: dict[str, Any]):
        from compressai.losses import RateDistortionLoss

        self.cfg = cfg
        self.out_dir = Path(os.path.expanduser(cfg["out_dir"]))
        self.device = resolve_device(cfg["device"])
        if cfg["threads"]:
            torch.set_num_threads(int(cfg["threads"]))
        torch.manual_seed(cfg["seed"])  # the initial weights too
        self.net = build_model(cfg).to(self.device)
        main, aux = parameter_groups(self.net)
        self.optimizer = torch.optim.Adam(main, lr=cfg["lr"])
        self.aux_optimizer = torch.optim.Adam(aux, lr=cfg["aux_lr"])
        drop = cfg["lr_drop"]
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, "min", factor=drop["factor"], patience=drop["patience"], min_lr=drop["min_lr"]
        )
        self.criterion = RateDistortionLoss(lmbda=cfg["lmbda"], metric=cfg["metric"])
        self.step = 0
        self.elapsed_s = 0.0
        self.best_val = math.inf
        self.init_record: dict[str, Any] | None = None  # what init_from started this run from
        self.data_summary: dict[str, Any] = {}
        self._stop_signal: int | None = None

    # data
    def prepare_data(self) -> None:
        cfg = self.cfg
        try:
            train = scan_images(list_images(cfg["data"]), min_size=cfg["patch_size"])
            self.sampler = CropSampler(train.usable, cfg["patch_size"], cfg["batch_size"], cfg["seed"])
            self.val_images: list[np.ndarray] = []
            if cfg["val_data"]:
                from bench.io.images import read_rgb8

                val = scan_images(list_images(cfg["val_data"]))
                self.val_images = [np.array(read_rgb8(p)) for p in val.usable[: cfg["val_max_images"]]]  # writable
        except TrainDataError as exc:
            raise TrainError(str(exc)) from exc
        self.data_summary = {
            "train": train.summary(),
            "train_folders": [Path(str(f)).name for f in cfg["data"]],
            "val_images": len(self.val_images),
            "val_folders": [Path(str(f)).name for f in cfg["val_data"]],
            "description": cfg["data_description"],
        }
        log.info(
            "training images: %d usable, %d corrupt, %d smaller than %d; validation images: %d",
            len(train.usable),
            len(train.corrupt),
            len(train.too_small),
            cfg["patch_size"],
            len(self.val_images),
        )

    # checkpoint
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg,
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "best_val": self.best_val,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "plateau": self.plateau.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "data": self.data_summary,
            "init": self.init_record,
        }

    def save(self, name: str = "last.pt") -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        atomic_torch_save(self.state(), path)
        log.info("step %d: checkpoint %s", self.step, path)
        return path

    def resume_or_init(self) -> None:
        last = self.out_dir / "last.pt"
        torch.manual_seed(self.cfg["seed"])
        if last.is_file():
            ckpt = read_checkpoint(last)
            diff = config_mismatch(ckpt["config"], self.cfg)
            if diff:
                raise TrainError(
                    f"{last} was trained with another config ({'; '.join(diff)}); "
                    "use another out_dir, or the same settings to resume"
                )
            self.net.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
            self.plateau.load_state_dict(ckpt["plateau"])
            torch.set_rng_state(ckpt["rng"])
            if ckpt["cuda_rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            self.step, self.elapsed_s, self.best_val = ckpt["step"], ckpt["elapsed_s"], ckpt["best_val"]
            self.init_record = ckpt.get("init")
            log.info("resumed %s at step %d (lr %.3g)", last, self.step, self.optimizer.param_groups[0]["lr"])
        elif self.cfg["init_from"]:
            self.init_record = _load_init_weights(self.net, self.cfg["init_from"])
            log.info("initialised from %s", self.cfg["init_from"])

    # signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum
        log.info("signal %d: stopping after this step", signum)

    # lr
    def _apply_step_drop(self) -> None:
        drop = self.cfg["lr_drop"]
        if drop["mode"] != "steps":
            return
        n_drops = sum(self.step >= int(f * self.cfg["steps"]) for f in drop["at"])
        lr = max(self.cfg["lr"] * drop["factor"] ** n_drops, drop["min_lr"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # validation
    def run_validation(self, train_stats: dict[str, float]) -> dict[str, Any]:
        t0 = time.perf_counter()
        val = validate(self.net, self.criterion, self.val_images, self.device) if self.val_images else {}
        record = {
            "step": self.step,
            "elapsed_s": round(self.elapsed_s, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "val_s": round(time.perf_counter() - t0, 1),
        }
        with open(self.out_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if val:
            log.info(
                "step %d: val loss %.4f, %.4f bpp (real bytes), %.2f dB PSNR",
                self.step,
                val["loss"],
                val["bpp"],
                val["psnr"],
            )
            if self.cfg["lr_drop"]["mode"] == "plateau":
                self.plateau.step(val["loss"])
            if val["loss"] < self.best_val:
                self.best_val = val["loss"]
                self.save("best.pt")
        return record

    # loop
    def train_step(self) -> dict[str, float]:
        x = self.sampler.batch(self.step).to(self.device)
        self.optimizer.zero_grad()
        self.aux_optimizer.zero_grad()
        out = self.criterion(self.net(x), x)
        out["loss"].backward()
        if self.cfg["clip_max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg["clip_max_norm"])
        self.optimizer.step()
        aux_loss = self.net.aux_loss()
        aux_loss.backward()
        self.aux_optimizer.step()
        return {
            "loss": out["loss"].item(),
            "bpp_loss": out["bpp_loss"].item(),
            "mse_loss": out["mse_loss"].item(),
            "aux_loss": aux_loss.item(),
        }

    def run(self) -> dict[str, Any]:
        """Train to ``steps`` (or until a signal); returns the last validation record."""
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prepare_data()
        self.resume_or_init()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        sums: dict[str, float] = {}
        count = 0
        last_record: dict[str, Any] = {}
        last_ckpt = last_val = time.monotonic()
        t_log, step_log = time.perf_counter(), self.step
        try:
            self.net.train()
            while self.step < cfg["steps"] and self._stop_signal is None:
                t0 = time.perf_counter()
                self._apply_step_drop()
                stats = self.train_step()
                self.step += 1
                self.elapsed_s += time.perf_counter() - t0
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if not math.isfinite(stats["loss"]):
                    raise TrainError(f"step {self.step}: the loss is {stats['loss']} (lower lr or check the data)")
                if cfg["log_every"] and self.step % cfg["log_every"] == 0:
                    dt = (time.perf_counter() - t_log) / max(self.step - step_log, 1)
                    log.info(
                        "step %d: loss %.4f bpp_loss %.4f mse %.6f aux %.1f lr %.3g (%.2f s/step)",
                        self.step,
                        stats["loss"],
                        stats["bpp_loss"],
                        stats["mse_loss"],
                        stats["aux_loss"],
                        self.optimizer.param_groups[0]["lr"],
                        dt,
                    )
                    t_log, step_log = time.perf_counter(), self.step
                now = time.monotonic()
                val_due = (cfg["val_every_steps"] and self.step % cfg["val_every_steps"] == 0) or (
                    cfg["val_every_minutes"] and now - last_val >= 60 * cfg["val_every_minutes"]
                )
                if val_due:
                    last_record = self.run_validation({k: v / count for k, v in sums.items()})
                    sums, count, last_val = {}, 0, time.monotonic()
                ckpt_due = (cfg["checkpoint_every_steps"] and self.step % cfg["checkpoint_every_steps"] == 0) or (
                    cfg["checkpoint_every_minutes"] and now - last_ckpt >= 60 * cfg["checkpoint_every_minutes"]
                )
                if ckpt_due:
                    self.save()
                    last_ckpt = time.monotonic()
            if self._stop_signal is None and count:
                last_record = self.run_validation({k: v / count for k, v in sums.items()})
            self.save()  # done, or stopped by a signal; after an error the last periodic checkpoint stands
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return last_record


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) the run ``cfg`` describes; returns the last validation record."""
    return Trainer(cfg).run()


# --- command line ------------------------------------------------------------------
