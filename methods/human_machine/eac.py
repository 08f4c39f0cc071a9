"""EAC (NIC) — efficient adaptive compression for people and several machine tasks (seed 003, Liu et al.).

On a pretrained CompressAI hyperprior codec (frozen), every machine task *i*
has a **mask predictor** that reads the hyperprior's (μ, σ) — three 3x3
convolutions with two leaky ReLUs, Gumbel-softmax while training, a hard max
at test (003 Sec. III-C) — and selects the elements of the quantized latent
ŷ that task needs. The selections partition ŷ (Sec. III-A, Fig. 1):

- subset *i* holds the elements task *i* selects that no earlier task
  selected; a final subset ``rest`` holds what no task selected;
- each subset is flattened in raster order and entropy-coded **on its own**
  with the hyperprior's Gaussian conditional (CompressAI's rANS, the element's
  own scale index and mean): one stream per subset, real bytes;
- the masks are computed from (μ, σ), which the decoder has from the ``z``
  stream, so they cost no bits.

Task *i* receives ``header`` + ``z`` + subsets 1…*i* ("we add reconstructed
latent representations ŷ_1, …, ŷ_i"); the elements it did not receive are
filled with their predicted mean μ (the aggregation module), the result is
synthesised to x̂_i, and its **task adapter** makes P_i = f_φ(x̂_i + f_ψ(x̂_i))
(Eq. 1): ``decode`` returns the adapted image x̂_i + f_ψ(x̂_i) as uint8 RGB and
the harness runs the frozen task network f_φ on it. The human receives every
subset, i.e. the backbone's full ŷ: the reconstruction is exactly the plain
backbone's. Layers are cumulative, so EAC is MBHD (one decode per task).

Backbones: ``bmshj2018-hyperprior`` (Ballé 2018, the paper's first; a scale
hyperprior, so μ = 0 and the aggregation fills with zeros) and
``mbt2018-mean`` (its mean-scale sibling, μ from the hyperprior). The paper's
second backbone, Cheng 2020, decodes ŷ with an autoregressive context model:
an element's distribution depends on its decoded neighbours, which a task
that receives only a subset does not have, so the subsets could not be
decoded independently as above; it is not offered.

Training (Sec. III-E, IV-B), one run per task and rate point, each predictor
on its own as the paper trains them:

- stage ``predictor`` (Eq. 3): L = R(ŷ_i) + λ·D(f_φ(x̂_i), G), R the bits of
  the selected elements under the hyperprior per pixel, D the task loss
  (``bench.tasks.losses``); the backbone and the task network are frozen.
- stage ``adapter`` (Eq. 5): L = D(P_i, G), only the adapter trains; backbone,
  task network and predictor frozen.

Adam, 1e-4 for four epochs then 1e-5 for one (stage 1) and 1e-3 then 1e-4
(stage 2), batch size 96: ``conf/recipe/eac.yaml``. ICMH (``icmh``, the
conference version) is the one-task configuration: one predictor, one subset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, MethodUnavailable
from bench.methods.container import ContainerError, read_header, write_header
from bench.methods.families import LayeredStreams, StreamContract
from bench.methods.learned.compressai import MIN_DIV, CompressAICodec, import_compressai, to_tensor, to_uint8
from bench.provenance import installed_versions
from bench.training.weights import WeightsMismatch, check_trained_on, load_trained

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.tasks.base import Task
    from bench.training.recipe import Batch, Recipe

#: hyperprior backbones whose ŷ elements are coded independently given (μ, σ)
BACKBONES = {"bmshj2018-hyperprior": "scale", "mbt2018-mean": "mean-scale"}
HEADER_VERSION = 1
REST = "rest"
BASE = "base"


def _nn() -> Any:
    import torch.nn

    return torch.nn


# --- the modules EAC adds ---------------------------------------------------------


def build_predictor(latent_channels: int, hidden: int = 128) -> nn.Module:
    """(μ, σ) -> keep/drop logits per latent element: three convolutions, two leaky ReLUs (003 Sec. III-C)."""
    nn = _nn()

    class MaskPredictor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.latent_channels = latent_channels
            self.net = nn.Sequential(
                nn.Conv2d(2 * latent_channels, hidden, 3, padding=1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1),
            )

        def logits(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            """``B x 2 x M x H x W``: index 0 = drop, 1 = keep."""
            import torch

            out = self.net(torch.cat([mu, sigma], 1))
            b, _, h, w = out.shape
            return out.view(b, 2, self.latent_channels, h, w)

        def forward(self, mu: torch.Tensor, sigma: torch.Tensor, tau: float | None = None) -> torch.Tensor:
            """The binary mask (float 0/1): Gumbel-softmax, straight-through, with ``tau``; the max without."""
            import torch.nn.functional as F

            logits = self.logits(mu, sigma)
            if tau is not None:
                return F.gumbel_softmax(logits, tau=tau, hard=True, dim=1)[:, 1]
            return (logits[:, 1] > logits[:, 0]).to(mu.dtype)

    return MaskPredictor()


def build_adapter(channels: int = 96) -> nn.Module:
    """f_ψ of Eq. 1: image -> residual; project to features, one residual block, concatenate, deconvolve.

    The last layer starts at zero, so an untrained adapter is the identity.
    """
    nn = _nn()

    class TaskAdapter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.project = nn.Sequential(nn.Conv2d(3, channels, 5, stride=2, padding=2), nn.LeakyReLU(inplace=True))
            self.block = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
            self.out = nn.ConvTranspose2d(2 * channels, 3, 5, stride=2, padding=2, output_padding=1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            import torch

            f = self.project(x)
            return self.out(torch.cat([f, f + self.block(f)], 1))

        def adapt(self, x: torch.Tensor) -> torch.Tensor:
            """x̂ + f_ψ(x̂), in the image range."""
            return (x + self(x)).clamp(0, 1)

    return TaskAdapter()


def build_task_modules(latent_channels: int, predictor_channels: int = 128, adapter_channels: int = 96) -> nn.Module:
    """One task's trained parts — its mask predictor and its adapter: what a checkpoint holds."""
    nn = _nn()
    modules = nn.Module()
    modules.predictor = build_predictor(latent_channels, predictor_channels)
    modules.adapter = build_adapter(adapter_channels)
    return modules


# --- the backbone's latent --------------------------------------------------------


@dataclass
class Latent:
    """What encoder and decoder share: ẑ and the hyperprior's (μ, σ) and scale indexes; ŷ on the encoder."""

    z_hat: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    indexes: torch.Tensor
    y: torch.Tensor | None = None
    y_hat: torch.Tensor | None = None


def _kind(net: nn.Module) -> str:
    from compressai.models.google import MeanScaleHyperprior, ScaleHyperprior

    if isinstance(net, MeanScaleHyperprior):
        return "mean-scale"
    if isinstance(net, ScaleHyperprior):
        return "scale"
    raise CodecError(f"EAC needs a hyperprior backbone {list(BACKBONES)}, not {type(net).__name__}")


def hyper_params(net: nn.Module, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) from ẑ; μ = 0 for the scale-only hyperprior."""
    import torch

    params = net.h_s(z_hat)
    if _kind(net) == "scale":
        return torch.zeros_like(params), params
    sigma, mu = params.chunk(2, 1)
    return mu, sigma


def analyse(net: nn.Module, x: torch.Tensor) -> tuple[Latent, torch.Tensor]:
    """ŷ, ẑ, (μ, σ) of a padded batch, quantized as at test time; also z (what the ``z`` stream codes)."""
    y = net.g_a(x)
    z = net.h_a(y.abs() if _kind(net) == "scale" else y)
    medians = net.entropy_bottleneck._get_medians()
    z_hat = net.entropy_bottleneck.quantize(z, "dequantize", medians)
    mu, sigma = hyper_params(net, z_hat)
    gc = net.gaussian_conditional
    y_hat = gc.quantize(y, "dequantize", None if _kind(net) == "scale" else mu)
    return Latent(z_hat, mu, sigma, gc.build_indexes(sigma), y=y, y_hat=y_hat), z


def element_bits(net: nn.Module, latent: Latent) -> torch.Tensor:
    """-log2 p(ŷ | μ, σ) per element, as the Gaussian conditional models it."""
    import torch

    gc = net.gaussian_conditional
    mu = None if _kind(net) == "scale" else latent.mu
    p = gc._likelihood(latent.y_hat, latent.sigma, mu)
    if gc.use_likelihood_bound:
        p = gc.likelihood_lower_bound(p)
    return -torch.log2(p)


def selections(masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Boolean subsets from the tasks' masks, in task order, then ``rest``: a partition of the latent."""
    import torch

    taken = torch.zeros_like(masks[0], dtype=torch.bool)
    out = []
    for m in masks:
        keep = m.bool()
        out.append(keep & ~taken)
        taken = taken | keep
    out.append(~taken)
    return out


def aggregate(y_hat: torch.Tensor, mu: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """The aggregation module: received elements of ŷ, the predicted mean μ elsewhere."""
    received = received.to(y_hat.dtype)
    return received * y_hat + (1 - received) * mu


# --- the method ----------------------------------------------------------------------


class EAC(Method):
    """EAC (NIC) on a CompressAI hyperprior; ``tasks`` in subset order; rate = the backbone's quality.

    ``backbone``: ``arch`` (``bmshj2018-hyperprior`` or ``mbt2018-mean``),
    ``metric``, and ``checkpoints`` / ``checkpoint_pattern`` as for
    :class:`CompressAICodec` (null: CompressAI's zoo weights).
    ``checkpoints``: the folder of trained predictors and adapters, one file
    per (task, quality) named by ``checkpoint_pattern`` (fields ``task``,
    ``quality``; default: where ``python -m bench train`` writes them).
    ``untrained_backbone``: ``{N, M, seed}`` builds a seeded untrained backbone
    of that size instead of loading one (tests only: meaningless numbers).
    """

    family = Family.MBHD
    uses_torch = True
    decodes_per_target = True
    bpp_source: ClassVar[str] = "bitstream"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        tasks: Sequence[str],
        backbone: Mapping[str, Any] | None = None,
        checkpoints: str | os.PathLike | None = None,
        checkpoint_pattern: str = "{task}/rate-{quality}/model.pt",
        predictor_channels: int = 128,
        adapter_channels: int = 96,
        untrained_backbone: Mapping[str, int] | None = None,
        device: str = "cpu",
        description: str = "",
        **options: Any,
    ):
        super().__init__(name, rates, description or f"EAC (003) on {dict(backbone or {}).get('arch')}", **options)
        self.tasks = [str(t) for t in tasks]
        if not self.tasks:
            raise ValueError(f"method {name!r}: no tasks configured (tasks: [detection, ...])")
        bad = [t for t in self.tasks if t in (HUMAN, BASE, REST) or not t or "/" in t]
        if bad or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"method {name!r}: task names must be unique and not {HUMAN!r}/{BASE!r}/{REST!r}: {bad}")
        bb = dict(backbone or {})
        arch = bb.pop("arch", "bmshj2018-hyperprior")
        if arch not in BACKBONES:
            raise ValueError(
                f"method {name!r}: backbone {arch!r} is not supported; EAC here runs on {list(BACKBONES)} "
                "(an autoregressive context model cannot decode a subset of the latent on its own)"
            )
        self.codec = CompressAICodec(arch, rates, arch=arch, device=device, **bb)
        self.arch = arch
        self.checkpoints = Path(os.path.expanduser(str(checkpoints))) if checkpoints is not None else None
        self.checkpoint_pattern = checkpoint_pattern
        self.predictor_channels = int(predictor_channels)
        self.adapter_channels = int(adapter_channels)
        self.untrained_backbone = dict(untrained_backbone) if untrained_backbone else None
        self._device = device
        self._task_modules: dict[tuple[int, str], nn.Module] = {}
        #: (quality, task) of modules installed from memory (:meth:`set_task_modules`), not read from a file
        self._generated: set[tuple[int, str]] = set()

    # --- device and weights ------------------------------------------------------------
    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        self._device = value
        self.codec.device = value

    def backbone(self, quality: int) -> nn.Module:
        """The frozen backbone of ``quality`` (loaded once)."""
        q = self.codec._quality(quality)
        if self.untrained_backbone is not None and q not in self.codec._models:
            import torch
            from compressai.zoo.image import model_architectures

            import_compressai()
            cfg = self.untrained_backbone
            torch.manual_seed(int(cfg.get("seed", 0)) + q)
            net = model_architectures[self.arch](int(cfg["N"]), int(cfg["M"]))
            net.update(force=True)
            self.codec.install(q, net)
        return self.codec.network(q)

    def checkpoint_file(self, task: str, quality: int) -> Path:
        if self.checkpoints is None:
            raise MethodUnavailable(
                f"{self.name}: no checkpoints folder configured for the trained predictors and adapters "
                f"(method.checkpoints=<folder>; train them with `python -m bench train method={self.name} "
                f"task={task} rate={quality}`)"
            )
        return self.checkpoints / self.checkpoint_pattern.format(task=task, quality=quality)

    def set_task_modules(self, quality: int, task: str, modules: nn.Module) -> None:
        """Use these predictor and adapter for ``task`` at ``quality`` (training, tests)."""
        if task not in self.tasks:
            raise ValueError(f"{self.name}: {task!r} is not one of its tasks {self.tasks}")
        self._task_modules[(int(quality), task)] = modules
        self._generated.add((int(quality), task))

    def backbone_weights(self, quality: int) -> Path | str:
        """The backbone's weights file at ``quality`` (a ``generated:`` digest for a seeded untrained one)."""
        q = self.codec._quality(quality)
        if self.untrained_backbone is not None:
            self.backbone(q)  # installed in memory: its digest is the identity
        return self.codec.weight_files(q)["codec"]

    def weight_files(self, rate: Any) -> dict[str, Path | str]:
        from bench.io.digests import module_digest
        from bench.running.keys import GENERATED

        q = self.codec._quality(rate)
        files: dict[str, Path | str] = {"backbone": self.backbone_weights(q)}
        for t in self.tasks:
            if (q, t) in self._generated:
                files[f"modules {t}"] = GENERATED + module_digest(self._task_modules[(q, t)])
            else:
                files[f"modules {t}"] = self.checkpoint_file(t, q)
        return files

    def fetch_weights(self) -> list[Path]:
        """The backbone's weights (fetched as its codec fetches them) and every trained module, each verified
        against its committed sidecar; downloaded from ``release_url`` when configured and missing."""
        from bench.training.weights import fetch_release

        files = self.codec.fetch_weights() if self.untrained_backbone is None else []
        modules = [self.checkpoint_file(t, q) for q in self.rates for t in self.tasks]
        return files + fetch_release(modules, self.options.get("release_url"))

    def served_tasks(self) -> list[str]:
        return list(self.tasks)

    def weights_origin(self, role: str) -> str:
        return self.codec.weights_origin("codec") if role == "backbone" else super().weights_origin(role)

    def new_task_modules(self, quality: int) -> nn.Module:
        """Fresh (untrained) predictor and adapter sized for the backbone of ``quality``."""
        net = self.backbone(quality)
        return build_task_modules(int(net.M), self.predictor_channels, self.adapter_channels).to(self.device)

    def task_modules(self, quality: int, task: str) -> nn.Module:
        key = (int(quality), task)
        if key not in self._task_modules:
            path = self.checkpoint_file(task, quality)
            if not path.is_file():
                raise MethodUnavailable(
                    f"{self.name}: no trained predictor/adapter for task {task!r} at quality {quality}: {path} is "
                    f"missing; train it with `python -m bench train method={self.name} task={task} rate={quality}`"
                )
            modules = self.new_task_modules(quality)
            try:
                state, record = load_trained(path)
                modules.load_state_dict(state)
            except Exception as exc:  # not a checkpoint of these modules (other sizes, another method)
                raise MethodUnavailable(
                    f"{self.name}: cannot load {path} as the predictor and adapter of {task!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            try:
                check_trained_on(path, record.get("trained_on"), "backbone", self.backbone_weights(quality))
            except WeightsMismatch as exc:
                raise MethodUnavailable(f"{self.name}: {exc}") from exc
            self._task_modules[key] = modules.eval().to(self.device)
        return self._task_modules[key]

    def unavailable_reason(self) -> str | None:
        if self.untrained_backbone is None:
            why = self.codec.unavailable_reason()
            if why:
                return f"backbone: {why}"
        else:
            try:
                import_compressai()
            except MethodUnavailable as exc:
                return str(exc)
        missing = []
        for q in self.rates:
            for t in self.tasks:
                if (q, t) in self._task_modules:
                    continue
                try:
                    path = self.checkpoint_file(t, q)
                except MethodUnavailable as exc:
                    return str(exc)
                if not path.is_file():
                    missing.append((t, q, path))
        if missing:
            t, q, path = missing[0]
            return (
                f"{len(missing)} trained predictor/adapter file(s) missing, e.g. task {t!r} quality {q}: {path}; "
                f"train with `python -m bench train method={self.name} task={t} rate={q}`"
            )
        return None

    # --- the family contract ---------------------------------------------------------
    def contract(self) -> StreamContract:
        layers = {BASE: ["header", "z"], **{f"task:{t}": [f"y.{t}"] for t in self.tasks}, REST: [f"y.{REST}"]}
        return LayeredStreams(layers, needs={t: f"task:{t}" for t in self.tasks})

    def subset_names(self) -> list[str]:
        return [*self.tasks, REST]

    # --- coding --------------------------------------------------------------------------
    def masks(self, quality: int, latent: Latent) -> list[torch.Tensor]:
        """Every task's binary mask from (μ, σ): the same on encoder and decoder."""
        return [self.task_modules(quality, t).predictor(latent.mu, latent.sigma) for t in self.tasks]

    def _header(self, quality: int, height: int, width: int, z_shape: Sequence[int], lengths: Sequence[int]) -> bytes:
        return write_header(HEADER_VERSION, (quality, height, width, *z_shape, len(self.tasks), *lengths))

    def _parse_header(self, data: bytes) -> tuple[int, int, int, tuple[int, int], list[int]]:
        what = f"{self.name} (EAC) header"
        try:
            (quality, height, width, zh, zw, n_tasks), _ = read_header(data, HEADER_VERSION, 6, what)
            if n_tasks != len(self.tasks):
                raise CodecError(
                    f"{self.name}: the bitstream has {n_tasks} task subsets, this decoder is configured for "
                    f"{len(self.tasks)} ({self.tasks})"
                )
            lengths, pos = read_header(data, HEADER_VERSION, 6 + n_tasks + 2, what)  # + z, the subsets, rest
        except ContainerError as exc:
            raise CodecError(str(exc)) from exc
        if pos != len(data):
            raise CodecError(f"{what}: {len(data) - pos} stray bytes after the header")
        return quality, height, width, (zh, zw), lengths[6:]

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        q = self.codec._quality(rate)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"{self.name}: expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        net = self.backbone(q)
        height, width = image.shape[:2]
        pad, _ = compute_padding(height, width, min_div=MIN_DIV)
        with torch.no_grad():
            x = F.pad(to_tensor(image).to(self.device), pad, mode="constant", value=0)
            latent, z = analyse(net, x)
            z_string = net.entropy_bottleneck.compress(z)[0]
            subsets = selections(self.masks(q, latent))
            gc = net.gaussian_conditional
            means = None if _kind(net) == "scale" else latent.mu
            payload = {"z": bytes(z_string)}
            for name, sel in zip(self.subset_names(), subsets):
                k = int(sel.sum())
                if k == 0:
                    payload[f"y.{name}"] = b""
                    continue
                y_sel = latent.y[sel].view(1, k)
                m_sel = means[sel].view(1, k) if means is not None else None
                payload[f"y.{name}"] = bytes(gc.compress(y_sel, latent.indexes[sel].view(1, k), means=m_sel)[0])
        lengths = [len(payload["z"]), *(len(payload[f"y.{n}"]) for n in self.subset_names())]
        streams = {"header": self._header(q, height, width, z.shape[-2:], lengths), **payload}
        counts = {n: int(s.sum()) for n, s in zip(self.subset_names(), subsets)}
        return Bitstream(streams, height, width, info={"quality": q, "elements": counts})

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """The human: the backbone's reconstruction; task *i*: its adapted image from subsets 1…i."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        if "header" not in bitstream.streams or "z" not in bitstream.streams:
            raise CodecError(f"{self.name}: the base layer (header, z) is missing: got {list(bitstream.streams)}")
        q, height, width, z_shape, lengths = self._parse_header(bitstream.streams["header"])
        if (height, width) != (bitstream.height, bitstream.width):
            raise CodecError(
                f"{self.name}: header says {height}x{width}, bitstream {bitstream.height}x{bitstream.width}"
            )
        names = ["z", *(f"y.{n}" for n in self.subset_names())]
        for name, n in zip(names, lengths):
            if name in bitstream.streams and len(bitstream.streams[name]) != n:
                raise CodecError(
                    f"{self.name}: stream {name!r} has {len(bitstream.streams[name])} bytes, header says {n}"
                )
        q = self.codec._quality(q)
        net = self.backbone(q)
        _, unpad = compute_padding(height, width, min_div=MIN_DIV)
        with torch.no_grad():
            z_hat = net.entropy_bottleneck.decompress([bitstream.streams["z"]], torch.Size(z_shape))
            mu, sigma = hyper_params(net, z_hat)
            latent = Latent(z_hat, mu, sigma, net.gaussian_conditional.build_indexes(sigma))
            subsets = selections(self.masks(q, latent))
            y_bar = latent.mu.clone()
            received = [n for n in self.subset_names() if f"y.{n}" in bitstream.streams]
            for name, sel in zip(self.subset_names(), subsets):
                if name not in received:
                    continue
                k = int(sel.sum())
                if k == 0:
                    continue
                means = None if _kind(net) == "scale" else latent.mu[sel].view(1, k)
                values = net.gaussian_conditional.decompress(
                    [bitstream.streams[f"y.{name}"]], latent.indexes[sel].view(1, k), means=means
                )
                y_bar[sel] = values.view(-1).to(y_bar.dtype)
            x_hat = net.g_s(y_bar).clamp_(0, 1)
            if target != HUMAN:
                if target not in self.tasks:
                    raise CodecError(f"{self.name}: no subset for task {target!r}; its tasks are {self.tasks}")
                x_hat = self.task_modules(q, target).adapter.adapt(x_hat)
            image = to_uint8(F.pad(x_hat, unpad))
        return image

    # --- in memory (no entropy coding): what the decoder must reproduce ----------------
    def forward_quantized(self, x: torch.Tensor, quality: int, target: str = HUMAN) -> torch.Tensor:
        """x̂ of ``target`` for a padded batch from the quantized latent, without coding: the reference path."""
        net = self.backbone(quality)
        latent, _ = analyse(net, x)
        subsets = selections(self.masks(quality, latent))
        upto = len(self.tasks) + 1 if target == HUMAN else self.tasks.index(target) + 1
        received = subsets[0].clone()
        for s in subsets[1:upto]:
            received |= s
        x_hat = net.g_s(aggregate(latent.y_hat, latent.mu, received)).clamp(0, 1)
        if target != HUMAN:
            x_hat = self.task_modules(quality, target).adapter.adapt(x_hat)
        return x_hat

    def versions(self) -> dict[str, str]:
        return installed_versions("compressai", "torch")

    # --- training (bench.training.loop) -------------------------------------------------
    def training_recipe(self, rate: Any, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Recipe:
        """Eq. 3 then Eq. 5 for one task at one quality (each predictor is trained on its own, as in 003)."""
        from bench.tasks.losses import loss_for
        from bench.training.recipe import Recipe, Stage, TrainingError

        if len(tasks) != 1:
            raise TrainingError(
                f"{self.name} trains one task's predictor and adapter per run (task=<one of {self.tasks}>); "
                f"got {[t.name for t in tasks]}"
            )
        task = tasks[0]
        if task.name not in self.tasks:
            raise TrainingError(f"{self.name}: task {task.name!r} is not one of its tasks {self.tasks}")
        q = self.codec._quality(rate)
        lambdas = {int(k): float(v) for k, v in dict(settings.get("lambdas") or {}).items()}
        if q not in lambdas:
            raise TrainingError(f"{self.name}: no λ for quality {q} (recipe.lambdas has {sorted(lambdas)})")
        lam, tau = lambdas[q], float(settings.get("tau", 1.0))
        self.device = device
        net = self.backbone(q).to(device).eval()
        task_loss = loss_for(task, **dict(settings.get("task_loss") or {}))
        import torch

        torch.manual_seed(int(settings.get("init_seed", 0)))
        modules = self.new_task_modules(q).to(device)
        start = settings.get("init_from")
        if start:  # a neighbouring quality's trained modules (same latent size): fine-tune them at this λ
            state, _ = load_trained(Path(os.path.expanduser(str(start))))
            try:
                modules.load_state_dict(state)
            except RuntimeError as exc:
                raise TrainingError(f"{self.name}: init_from {start} does not fit these modules: {exc}") from exc
        self.set_task_modules(q, task.name, modules)

        def prepare(batch: Batch) -> tuple[Latent, Any]:
            if batch.x.shape[-1] % MIN_DIV or batch.x.shape[-2] % MIN_DIV:
                raise TrainingError(
                    f"{self.name}: training crops must be multiples of {MIN_DIV} (crop={batch.x.shape[-1]})"
                )
            with torch.no_grad():
                latent, _ = analyse(net, batch.x)
                return latent, task_loss.targets(batch.x)

        def predictor_loss(batch: Batch) -> dict[str, torch.Tensor]:  # Eq. 3
            latent, targets = prepare(batch)
            mask = modules.predictor(latent.mu, latent.sigma, tau=tau)
            with torch.no_grad():
                bits = element_bits(net, latent)
            pixels = batch.x.shape[0] * batch.x.shape[-2] * batch.x.shape[-1]
            rate_bpp = (mask * bits).sum() / pixels
            x_hat = net.g_s(aggregate(latent.y_hat, latent.mu, mask)).clamp(0, 1)
            distortion = task_loss.loss(x_hat, targets)
            return {
                "loss": rate_bpp + lam * distortion,
                "bpp": rate_bpp,
                "task": distortion,
                "kept": mask.mean(),
            }

        def adapter_loss(batch: Batch) -> dict[str, torch.Tensor]:  # Eq. 5
            latent, targets = prepare(batch)
            with torch.no_grad():
                mask = modules.predictor(latent.mu, latent.sigma)
                x_hat = net.g_s(aggregate(latent.y_hat, latent.mu, mask)).clamp(0, 1)
            return {"loss": task_loss.loss(modules.adapter.adapt(x_hat), targets)}

        frozen = {"backbone": net, "task network": task_loss.network}
        stages = [
            Stage("predictor", trains=["predictor"], frozen=frozen, loss=predictor_loss),
            Stage("adapter", trains=["adapter"], frozen={**frozen, "predictor": modules.predictor}, loss=adapter_loss),
        ]
        single = EAC(self.name, [q], [task.name], backbone={"arch": self.arch}, device=device)
        single.codec, single.arch = self.codec, self.arch
        single.set_task_modules(q, task.name, modules)

        def validate(images: list[np.ndarray]) -> dict[str, float]:
            """Real coding of held-out images: bpp per target, human PSNR, the task loss on what it decodes."""
            from bench.metrics import image as M

            out: dict[str, list[float]] = {"bpp/human": [], f"bpp/{task.name}": [], "psnr/human": []}
            out[f"loss/{task.name}"] = []
            out[f"loss/{task.name}/human-reconstruction"] = []
            for image in images:
                written = single.encode(image, q)
                charged = single.streams_for(task.name, written)
                out["bpp/human"].append(written.bpp())
                out[f"bpp/{task.name}"].append(written.bpp(charged))
                human = single.decode(written, HUMAN)
                out["psnr/human"].append(M.psnr(human, image))
                machine = single.decode(
                    Bitstream({n: written.streams[n] for n in charged}, *image.shape[:2]), task.name
                )
                x = to_tensor(image).to(device)
                targets = task_loss.targets(x)
                for key, decoded in ((f"loss/{task.name}", machine), (f"loss/{task.name}/human-reconstruction", human)):
                    out[key].append(float(task_loss.loss(to_tensor(decoded).to(device), targets)))
            return {k: float(np.mean(v)) for k, v in out.items()}

        return Recipe(modules, stages, validate, trained_on={"backbone": self.backbone_weights(q)})
