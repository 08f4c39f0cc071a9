"""SICMH's training stages (seed 001, §3.1.3, §3.2, §3.3, §4), as a :class:`bench.training.loop.Recipe`.

The paper trains its four parts (Fig. 23) one after the other, each stage
freezing what the one before made:

=========  ==============================================  ==========================  ====================
stage      trains                                          frozen                      loss
=========  ==============================================  ==========================  ====================
``side``   A (encoders, entropy models) + the first        task networks               λ_side·R_side + CE
           task's fusion block                                                         (Eq. 12)
``heads``  every task's fusion block                       A, task networks            CE (Eqs. 13, 14)
``coarse`` the coarse fusion block + C                     A, task fusion blocks       MSE(x, x̂_c) (Eq. 20)
``fine``   D (Encoder_r, Decoder_h1r, its Prediction       A, B, C                     MSE(x, x̂_f) + λ·R
           Model, Decoder_r)                                                           (Eq. 25)
=========  ==============================================  ==========================  ====================

R_side and R are bits per pixel estimated from the likelihoods (additive
noise), as the paper's losses; the validation after each stage codes held-out
images to real bytes. MSE is on [0, 1] images. The task loss ("CE") is
:mod:`bench.tasks.losses`' loss of the frozen harness task network on h̃''
against its own output on the uncompressed crop: cross-entropy for
classifiers and segmenters, the training losses for detectors (the paper
fine-tunes its task networks on labels; see :mod:`bench.methods.human_machine.sicmh`).

Recipe settings (``conf/recipe/sicmh.yaml``): ``rate_points`` (per rate:
``side_lambda``, ``fine_lambda``), ``run`` (the stages to run, in order; the
paper's classification head is a ``run: [heads]`` from a segmentation run's
weights), ``init_from`` (a ``model.pt`` of an earlier SICMH run),
``init_encoder_from`` (a CompressAI hyperprior checkpoint whose ``g_a``, the
same Fig. 5a structure, initialises the Encoder and the enhancement layer's
analysis transform, and whose ``g_s`` its synthesis, as the paper starts from a
pretrained codec) and ``stages`` (optimiser, lr schedule, batch size, epochs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.methods.base import HUMAN, CodecError
from bench.methods.human_machine.sicmh import BASE_STREAMS, COARSE
from bench.methods.learned.losses import bits_per_pixel
from bench.metrics import image as M
from bench.tasks.losses import TaskLoss, loss_for
from bench.training.recipe import Batch, Recipe, Stage, TrainingError

if TYPE_CHECKING:
    from bench.methods.human_machine.sicmh import SICMH
    from bench.methods.human_machine.sicmh_model import SICMHNetwork
    from bench.tasks.base import Task

STAGES = ("side", "heads", "coarse", "fine")


def task_loss_of(task: Task) -> TaskLoss:
    """The differentiable loss through ``task``'s frozen network, or a TrainingError saying why there is none."""
    try:
        return loss_for(task)
    except TypeError as exc:
        raise TrainingError(f"sicmh: {exc}") from exc


def pixels(x: torch.Tensor) -> int:
    return x.shape[0] * x.shape[-2] * x.shape[-1]


def rate_point(settings: Mapping[str, Any], rate: Any) -> dict[str, float]:
    """λ_side and λ_fine of ``rate`` from ``settings["rate_points"]``."""
    points = settings.get("rate_points") or {}
    lambdas = points.get(rate, points.get(str(rate)))
    if lambdas is None:
        raise TrainingError(f"sicmh: no rate_points entry for rate {rate!r} (configured: {sorted(points, key=str)})")
    missing = [k for k in ("side_lambda", "fine_lambda") if lambdas.get(k) is None]
    if missing:
        raise TrainingError(f"sicmh: rate_points.{rate} lacks {missing}")
    return {k: float(lambdas[k]) for k in ("side_lambda", "fine_lambda")}


def load_encoder_from_codec(net: SICMHNetwork, path: str | Path) -> None:
    """Copy a CompressAI hyperprior's ``g_a`` (Fig. 5a's structure) into the Encoder and the enhancement layer's
    ``encoder_r``, its ``g_s`` into ``decoder_r`` (the residue's codec starts as an image codec, not at random);
    names any mismatch."""
    from bench.methods.learned.compressai import state_dict_of
    from bench.training.weights import verified_sidecar as verify_checksum

    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainingError(f"sicmh: init_encoder_from: file not found: {path}")
    try:
        verify_checksum(path)
        state = state_dict_of(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise TrainingError(f"sicmh: init_encoder_from: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    for module, prefix, what in (
        (net.side.encoder, "g_a.", "Encoder"),
        (net.enhancement.encoder_r, "g_a.", "enhancement encoder"),
        (net.enhancement.decoder_r, "g_s.", "enhancement decoder"),
    ):
        ours = module.state_dict()
        theirs = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        missing = sorted(set(ours) - set(theirs))
        wrong = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
        if missing or wrong:
            raise TrainingError(
                f"sicmh: init_encoder_from {path}: its {prefix[:-1]} does not fit the {what} (width "
                f"{net.arch.width}, latent_channels {net.arch.latent_channels}): missing {missing[:5]}, "
                f"other shapes {wrong[:5]}"
            )
        module.load_state_dict({k: theirs[k].float() for k in ours})


def load_model(net: SICMHNetwork, path: str | Path) -> None:
    """Start from an earlier SICMH run's ``model.pt`` (or any file holding its state dict)."""
    from bench.methods.learned.compressai import state_dict_of

    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainingError(f"sicmh: init_from: file not found: {path}")
    try:
        state = state_dict_of(torch.load(path, map_location="cpu", weights_only=True))
        net.load_state_dict(dict(state))
    except Exception as exc:
        raise TrainingError(f"sicmh: init_from {path}: {type(exc).__name__}: {exc}") from exc


def build_recipe(method: SICMH, rate: Any, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Recipe:
    """The stages of ``settings["run"]`` (default: all four) for rate point ``rate`` of ``method``."""
    lambdas = rate_point(settings, rate)
    if not tasks and method.machine_task is not None:  # the run names no task: the method's own
        tasks = [method.machine_task]
    run = list(settings.get("run") or STAGES)
    unknown = [s for s in run if s not in STAGES]
    if unknown or len(set(run)) != len(run):
        raise TrainingError(f"sicmh: run must list distinct stages of {list(STAGES)}, got {run}")
    heads: dict[str, TaskLoss] = {}
    for task in tasks:
        try:
            heads.setdefault(method.head_for(task.name), task_loss_of(task))
        except CodecError as exc:
            raise TrainingError(str(exc)) from exc
    if not heads and {"side", "heads"} & set(run):
        raise TrainingError(
            "sicmh: the side and heads stages train through a task network: give one with task=<name> "
            "(or run only coarse and fine with recipe.run=[coarse,fine] and recipe.init_from=<model.pt>)"
        )

    net = method.new_network()
    if settings.get("init_from"):
        load_model(net, settings["init_from"])
    if settings.get("init_encoder_from"):
        load_encoder_from_codec(net, settings["init_encoder_from"])
    net = net.to(device)
    task_nets = {f"task:{loss.task.name}": loss.network for loss in heads.values()}
    first_head = next(iter(heads), None)

    def side_loss(batch: Batch) -> dict[str, torch.Tensor]:
        task_loss = heads[first_head]
        targets = task_loss.targets(batch.x)
        out = net(batch.x, heads=[first_head])
        bpp = bits_per_pixel(out.likelihoods, pixels(batch.x))
        task = task_loss.loss(out.machine[first_head], targets)
        return {"loss": lambdas["side_lambda"] * bpp + task, "bpp_side": bpp, "task": task}

    def heads_loss(batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            side = net.side(batch.x)
        terms = {}
        for head, task_loss in heads.items():
            machine_input = net.machine_input(head, side["h1_hat"], side["h2_hat"])
            terms[f"task.{head}"] = task_loss.loss(machine_input, task_loss.targets(batch.x))
        return {"loss": sum(terms.values()), **terms}

    def coarse_loss(batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            side = net.side(batch.x)
        mse = F.mse_loss(net.coarse_reconstruction(side["h1_hat"], side["h2_hat"]), batch.x)
        return {"loss": mse, "mse_coarse": mse}

    def fine_loss(batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            side = net.side(batch.x)
            x_coarse = net.coarse_reconstruction(side["h1_hat"], side["h2_hat"])
        enh = net.enhancement(batch.x - x_coarse, side["h1_hat"])
        mse = F.mse_loss(x_coarse + enh["x_r_hat"], batch.x)
        bpp = bits_per_pixel({**side["likelihoods"], "yr": enh["likelihoods"]}, pixels(batch.x))
        return {"loss": mse + lambdas["fine_lambda"] * bpp, "mse_fine": mse, "bpp": bpp}

    task_fusion = {f"fusion.{h}": net.fusion[h] for h in net.arch.heads}
    stages = {
        "side": lambda: Stage(
            "side", trains=["side", f"fusion.{first_head}"], frozen=task_nets, loss=side_loss, aux_loss=net.aux_loss
        ),
        "heads": lambda: Stage(
            "heads",
            trains=[f"fusion.{h}" for h in heads],
            frozen={"side": net.side, **task_nets},
            loss=heads_loss,
        ),
        "coarse": lambda: Stage(
            "coarse",
            trains=[f"fusion.{COARSE}", "coarse"],
            frozen={"side": net.side, **task_fusion},
            loss=coarse_loss,
        ),
        "fine": lambda: Stage(
            "fine",
            trains=["enhancement"],
            frozen={"side": net.side, "fusion": net.fusion, "coarse": net.coarse},
            loss=fine_loss,
        ),
    }

    def validate(images: list[np.ndarray]) -> dict[str, float]:
        return validation_figures(method, rate, net, images)

    return Recipe(net, [stages[name]() for name in run], validate)


def validation_figures(method: SICMH, rate: Any, net: SICMHNetwork, images: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean bpp of the base layer and of both layers (real bytes) and PSNR of x̂_c and x̂_f on ``images``."""
    method.set_network(rate, net)
    rows = []
    for image in images:
        bitstream = method.encode(image, rate)
        row = {
            "bpp_base": bitstream.bpp(list(BASE_STREAMS)),
            "bpp_total": bitstream.bpp(),
            "psnr_coarse": M.psnr(method.reconstruct(bitstream, COARSE), image),
        }
        if method.human_reconstruction == "fine":
            row["psnr_fine"] = M.psnr(method.decode(bitstream, HUMAN), image)
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
