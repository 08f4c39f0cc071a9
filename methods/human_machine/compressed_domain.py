"""Inference from the compressed representation (Torfason et al., ICLR 2018; survey 000 [176]) — SBMD.

One bitstream, a CompressAI codec's (``header``, ``y``, ``z``, exactly as
:class:`bench.methods.learned.compressai.CompressAICodec` writes it). The
human decodes pixels with the codec's synthesis; the machine task never
does: its head entropy-decodes ŷ (the codec's own ``decompress`` with the
synthesis transform tapped out, so no pixel is made) and reads ŷ directly,
returning the prediction (:class:`HeadPrediction`) in the task's own format.

The head follows Torfason's cResNet: a ResNet whose first stages are cut and
replaced by a layer reading the compressed representation. Here it is an
adapter from ŷ (M channels at 1/16 resolution) to the task network's
features at its cut (:func:`bench.methods.human_machine.latent_scalable.latent_transform`,
resampled onto the grid of the network's input where the task resizes its
input), then a trainable copy of the task network's back half
(:meth:`bench.methods.human_machine.task_split.SplitTaskNetwork.trainable_back`), which
predicts in the task's own format. Torfason's tasks are classification and
semantic segmentation; the default task is ESPNet (Cityscapes segmentation,
cut at ``level3``), YOLOX-Nano (``task=yolox-nano``) and torchvision
networks with their weights (``task=resnet50 method.split=layer3``) work
too. Every target is charged the whole stream.

Training as Torfason: the head on the frozen codec (stage ``head``), then
optionally codec and head jointly (stage ``joint``: R + λ·D + γ·task loss).
Without labels for the training images the task loss is distillation of the
frozen task network's raw outputs on the uncompressed image (segmenters and
classifiers: KL divergence of the per-pixel or per-image class
distributions; detectors: the raw-head distillation of
:mod:`bench.tasks.losses`); Torfason used ImageNet labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, HeadPrediction, MethodUnavailable
from bench.methods.human_machine.latent_scalable import latent_transform, task_features
from bench.methods.human_machine.one_task import OneMachineTask
from bench.methods.human_machine.task_split import SplitTaskNetwork
from bench.methods.learned.base import LearnedMethod
from bench.methods.learned.compressai import MIN_DIV, CompressAICodec
from bench.tasks.base import Task

if TYPE_CHECKING:
    import torch


class _SynthesisTap:
    """Stands in for a codec's ``g_s``: records its input ŷ; runs the real synthesis only if asked."""

    def __init__(self, synthesis: Any, run: bool):
        self.synthesis = synthesis
        self.run = run
        self.y_hat: torch.Tensor | None = None

    def __call__(self, y_hat: torch.Tensor) -> torch.Tensor:
        self.y_hat = y_hat
        if self.run:
            return self.synthesis(y_hat)
        return y_hat.new_zeros(1)  # decompress clamps what g_s returns: nothing to make


@contextlib.contextmanager
def tap_synthesis(net: Any, run: bool = False) -> Iterator[_SynthesisTap]:
    """Within the block, ``net.g_s`` records ŷ (and returns x̂ only when ``run``)."""
    tap = _SynthesisTap(net.g_s, run)
    # an instance attribute shadows the registered submodule without touching the module tree
    net.__dict__["g_s"] = tap
    try:
        yield tap
    finally:
        net.__dict__.pop("g_s", None)


def latent_from_strings(net: Any, strings: list[list[bytes]], shape: Sequence[int]) -> torch.Tensor:
    """ŷ entropy-decoded from the codec's strings by its own ``decompress``, without the synthesis."""
    import torch

    with tap_synthesis(net, run=False) as tap, torch.inference_mode():
        net.decompress(strings, torch.Size(shape))
    if tap.y_hat is None:
        raise CodecError(f"{type(net).__name__}.decompress never called its synthesis g_s: cannot tap ŷ")
    return tap.y_hat


class LatentHead:
    """Factory of the head modules (built lazily: torch is imported on first use)."""

    @staticmethod
    def build(split: SplitTaskNetwork, latent_channels: int, hidden: int) -> torch.nn.Module:
        """Adapter (ŷ -> features at the cut) + a trainable copy of the task network's back half."""
        from torch import nn

        head = nn.Module()
        head.adapter = latent_transform(latent_channels, hidden, split.channels, split.stride)
        head.back = split.trainable_back()
        return head


class CompressedDomain(OneMachineTask, LearnedMethod):
    """A CompressAI codec whose latent also feeds a task head (Torfason et al.): SBMD.

    ``arch``, ``metric``, ``codec_checkpoints``, ``codec_checkpoint_pattern``
    and ``entropy_coder`` are :class:`CompressAICodec`'s: the codec training
    starts from (CompressAI's zoo, or the project's own checkpoints); the
    rates are its qualities. ``checkpoints`` hold the trained method, one per
    quality: the head and the codec it was trained with (``codec.*`` and
    ``head.*`` keys, what ``python -m bench train`` writes), so a jointly
    trained codec is coded with exactly its own weights.
    """

    family = Family.SBMD
    decodes_per_target = True

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        machine_task: Task | None = None,
        split: str | None = None,
        arch: str = "bmshj2018-hyperprior",
        metric: str = "mse",
        codec_checkpoints: Mapping[Any, str] | str | None = None,
        codec_checkpoint_pattern: str | None = None,
        checkpoints: Mapping[Any, str] | str | None = None,
        checkpoint_pattern: str | None = None,
        head_channels: int = 128,
        entropy_coder: str = "ans",
        device: str = "cpu",
        description: str = "",
        **options: Any,
    ):
        self.codec = CompressAICodec(
            name, rates, arch, metric, codec_checkpoints, codec_checkpoint_pattern, entropy_coder, device=device
        )
        super().__init__(
            name,
            rates,
            description or f"task head on the {arch} latent (Torfason et al.)",
            checkpoints=checkpoints,
            checkpoint_pattern=checkpoint_pattern,
            entropy_coder=entropy_coder,
            device=device,
            **options,
        )
        self.machine_task = machine_task
        self.split = split
        self.head_channels = int(head_channels)
        self._split_net: SplitTaskNetwork | None = None

    @property
    def device(self) -> str:
        return self.codec.device

    @device.setter
    def device(self, value: str) -> None:
        self.codec.device = value

    @property
    def split_network(self) -> SplitTaskNetwork:
        """The frozen task network cut at ``split`` (the teacher; its back is what heads copy)."""
        if self._split_net is None or self._split_net.task is not self.machine_task:
            self.task_name()
            self._split_net = SplitTaskNetwork(self.machine_task, self.split)
        return self._split_net

    # --- networks --------------------------------------------------------------------
    def new_head(self, latent_channels: int) -> torch.nn.Module:
        """An untrained head (training starts here) for a latent of ``latent_channels``."""
        return LatentHead.build(self.split_network, latent_channels, self.head_channels)

    def pair(self, codec: Any, head: Any) -> Any:
        """The codec and head of one rate point as one module (what a checkpoint holds: ``codec.*``, ``head.*``)."""
        import torch

        return torch.nn.ModuleDict({"codec": codec, "head": head})

    def prepared(self, net: Any) -> Any:
        net["codec"] = super().prepared(net["codec"])
        net["head"] = net["head"].eval().to(self.device)
        return net

    def set_networks(self, quality: int, codec: Any, head: Any) -> None:
        """Use ``codec`` and ``head`` for ``quality`` (tests, training; the codec's entropy tables are built here)."""
        self.set_network(quality, self.pair(codec, head))
        self.codec.install(quality, self.network(quality)["codec"])

    def load_network(self, rate: Any) -> Any:
        from compressai.zoo.image import model_architectures

        quality = int(rate)
        state = self.checkpoints.load(quality)
        codec_state = {k[len("codec.") :]: v for k, v in state.items() if k.startswith("codec.")}
        head_state = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
        path = self.checkpoints.path(quality)
        if not codec_state or not head_state:
            raise MethodUnavailable(f"{self.name}: checkpoint {path} has no codec.* and head.* weights")
        try:
            codec = model_architectures[self.codec.arch].from_state_dict(codec_state)
            head = self.new_head(int(codec.M) if hasattr(codec, "M") else codec.g_a[-1].out_channels)
            head.load_state_dict(head_state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise MethodUnavailable(
                f"{self.name}: checkpoint {path} does not fit arch={self.codec.arch}, split={self.split}, "
                f"head_channels={self.head_channels}: {type(exc).__name__}: {exc}"
            ) from exc
        net = self.prepared(self.pair(codec, head))
        self.codec.install(quality, net["codec"])
        return net

    def head(self, quality: int) -> Any:
        """The trained head of ``quality`` (loading it installs its codec too)."""
        return self.network(quality)["head"]

    def codec_network(self, quality: int) -> Any:
        self.head(quality)
        return self.codec.network(quality)

    def head_split(self, head: Any) -> SplitTaskNetwork:
        """The task network cut as the teacher, with the head's own back half in place of the frozen one."""
        return SplitTaskNetwork(self.machine_task, self.split_network.split, back=head.back)

    def unavailable_reason(self) -> str | None:
        return self.task_unavailable(split=True) or self.missing_weights()

    # --- coding ----------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        self.codec_network(self.codec._quality(rate))
        return self.codec.encode(image, rate)

    def head_prediction(self, quality: int, y_hat: torch.Tensor, height: int, width: int) -> Any:
        """The head's prediction from ŷ of the padded image."""
        import torch

        head = self.head(quality)
        split = self.head_split(head)
        with torch.inference_mode():
            features = task_features(head.adapter, y_hat.to(self.device), split, (height, width), MIN_DIV)
            return split.predictions(split.back(features, (height, width)), (height, width))[0]

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray | HeadPrediction:
        if target == HUMAN:
            header, _ = self.codec.parse(bitstream)
            self.codec_network(header.quality)
            return self.codec.decode(bitstream, HUMAN)
        if target != self.task_name():
            raise CodecError(f"{self.name}: serves targets {[HUMAN, self.task_name()]}, not {target!r}")
        header, strings = self.codec.parse(bitstream)
        y_hat = latent_from_strings(self.codec_network(header.quality), strings, header.shape)
        return HeadPrediction(self.head_prediction(header.quality, y_hat, header.height, header.width))

    def versions(self) -> dict[str, str]:
        return self.codec.versions()

    # --- training ----------------------------------------------------------------------
    def training_recipe(self, rate: int, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Any:
        """Torfason's recipe: ``head`` on the frozen codec, then (if configured) ``joint``.

        ``settings``: ``stages`` (``head``, and ``joint`` to train codec and head
        together), ``lambdas`` (the codec's λ per quality, for ``joint``),
        ``task_weight`` (γ, for ``joint``), ``temperature`` (distillation).
        """
        import torch
        import torch.nn.functional as F
        from torch import nn

        from bench.methods.human_machine.latent_scalable import adopt_task, rate_lambda, validation_figures
        from bench.methods.learned.losses import bits_per_pixel
        from bench.training.recipe import Recipe, Stage

        adopt_task(self, tasks)
        self.device = device
        quality = self.codec._quality(rate)
        codec = self.codec.network(quality)  # the codec to start from (zoo or codec_checkpoints)
        teacher = self.split_network
        teacher.network.to(device)
        model = nn.Module()
        model.codec = codec.to(device)
        model.head = self.new_head(int(getattr(codec, "M", 0)) or codec.g_a[-1].out_channels).to(device)
        student = self.head_split(model.head)
        temperature = float(settings.get("temperature", 1.0))

        def task_loss(x: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
            hw = x.shape[-2:]
            with torch.no_grad():
                target = teacher.back(teacher.front(x), hw)
            features = task_features(model.head.adapter, y_hat, student, hw, MIN_DIV)
            return teacher.distillation(student.back(features, hw), target, temperature)

        def head_loss(batch: Any) -> dict[str, Any]:
            with torch.no_grad(), tap_synthesis(model.codec, run=False) as tap:
                model.codec(batch.x)  # eval mode: ŷ rounded as the decoder will see it
            loss = task_loss(batch.x, tap.y_hat)
            return {"loss": loss, "distillation": loss}

        stages = [
            Stage("head", trains=["head"], frozen={"codec": model.codec, "task": teacher.network}, loss=head_loss)
        ]
        if "joint" in (settings.get("stages") or {}):
            lam = rate_lambda(self.name, settings, rate)
            gamma = float(settings.get("task_weight", 1.0))

            def joint_loss(batch: Any) -> dict[str, Any]:
                x = batch.x
                with tap_synthesis(model.codec, run=True) as tap:
                    out = model.codec(x)
                bpp = bits_per_pixel(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
                mse = F.mse_loss(out["x_hat"], x)
                t = task_loss(x, tap.y_hat)
                return {"loss": bpp + lam * 255**2 * mse + gamma * t, "bpp": bpp, "mse": mse, "distillation": t}

            stages.append(
                Stage(
                    "joint",
                    trains=[""],
                    frozen={"task": teacher.network},
                    loss=joint_loss,
                    aux_loss=model.codec.aux_loss,
                )
            )

        def validate(images: Sequence[np.ndarray]) -> dict[str, float]:
            self.set_networks(quality, model.codec, model.head)
            return validation_figures(self, quality, images, teacher)

        # head only: the head depends on the frozen codec, whose weights the checkpoint names; joint trains both
        joint = "joint" in (settings.get("stages") or {})
        frozen_codec = {} if joint else {"backbone": self.codec.weight_files(quality)["codec"]}
        return Recipe(model, stages, validate=validate, trained_on=frozen_codec)
