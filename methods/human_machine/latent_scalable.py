"""Latent-space scalability (Choi & Bajić, ICIP 2021 and TIP 2022; survey 000 [37], [38]) — MBHD.

A hyperprior codec (Ballé et al. 2018, CompressAI's ``ScaleHyperprior``)
whose latent ``y`` is split by channels: the first ``base_channels`` form the
*base* layer, which alone serves the machine task, the rest form the
*enhancement* layer, which together with the base reconstructs the image.
A *latent-space transform* (a small synthesis network) maps the decoded base
latent to the features of a frozen task network at a cut, and the rest of
that network finishes the task (:mod:`bench.methods.human_machine.task_split`), as Choi &
Bajić map their base latent to YOLOv3's layer-12 features. The default task
is YOLOX-Nano, cut after CSPDarknet's dark3 (stride 8, the closest to their
YOLOv3 layer 12); ESPNet (``task=espnet``) and torchvision networks with
their weights (``task=resnet50 method.split=layer2``) work too. Where the
task network reads a resized image (YOLOX's letterbox, ESPNet's resize),
the transform's hidden features are resampled onto the grid of the network's
input the same way between its strided layers and its last convolutions.

Streams, each entropy-coded on its own (real bytes): ``header`` and ``z``
(the hyperprior, which both layers' Gaussian conditionals need), ``base``
(``ŷ[:base_channels]``), ``enhancement`` (``ŷ[base_channels:]``). The
layers are ``base = header + z + base`` and ``enhancement``; the task is
charged the base layer, the human both.

Training (one stage, end to end, as the papers): loss = R + λ·(D_image +
γ·D_features) with R the bits of ŷ and ẑ per pixel, D_image the MSE of
the reconstruction (times 255², CompressAI's convention) and D_features
the MSE between the transformed base latent and the frozen task network's
features of the input. The task network is frozen and verified unchanged.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, HeadPrediction, MethodUnavailable
from bench.methods.families import LayeredStreams, StreamContract
from bench.methods.human_machine.one_task import OneMachineTask
from bench.methods.human_machine.task_split import SplitTaskNetwork
from bench.methods.learned.base import LearnedMethod
from bench.methods.learned.compressai import (
    MIN_DIV,
    Header,
    import_compressai,
    to_tensor,
    to_uint8,
)
from bench.tasks.base import Task

if TYPE_CHECKING:
    import torch

#: stream names in layer order (the ``header`` lengths follow the last three)
STREAMS = ("header", "z", "base", "enhancement")
#: the codec's latent has 1/16 of the image's resolution (four stride-2 stages)
LATENT_STRIDE = 16


def latent_transform(base_channels: int, hidden: int, out_channels: int, out_stride: int) -> torch.nn.Module:
    """Base latent (stride 16) -> task features (stride ``out_stride``): a module with a ``trunk`` (convs and
    stride-2 (de)convolutions) and a ``tail`` (convs), run by :func:`task_features` with the task's resampling
    between them."""
    from compressai.layers import GDN
    from torch import nn

    if out_stride <= 0 or out_stride & (out_stride - 1):
        raise ValueError(f"feature stride must be a power of two, got {out_stride}")
    layers: list[nn.Module] = [nn.Conv2d(base_channels, hidden, 3, padding=1), nn.LeakyReLU(inplace=True)]
    scale = LATENT_STRIDE
    while scale > out_stride:
        layers += [nn.ConvTranspose2d(hidden, hidden, 5, 2, padding=2, output_padding=1), GDN(hidden, inverse=True)]
        scale //= 2
    while scale < out_stride:
        layers += [nn.Conv2d(hidden, hidden, 5, 2, padding=2), nn.LeakyReLU(inplace=True)]
        scale *= 2
    module = nn.Module()
    module.trunk = nn.Sequential(*layers)
    module.tail = nn.Sequential(
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, 3, padding=1),
    )
    return module


def task_features(
    transform: torch.nn.Module, latent: torch.Tensor, split: SplitTaskNetwork, image_hw: Sequence[int], min_div: int
) -> torch.Tensor:
    """A latent of the padded image -> the task network's features at its cut, on the grid of its input.

    The trunk's output is cropped to the image (the codec pads it) and
    resampled as the task's preprocessing resamples the image (the identity
    for networks that read the image at its own size); the tail makes the
    features there.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    hidden = crop_to_image(transform.trunk(latent), h, w, split.stride, min_div)
    return transform.tail(split.resample(hidden, (h, w), split.stride))


@functools.lru_cache(maxsize=1)
def network_class() -> type:
    """The network class, built on first use so that importing this module needs no torch."""
    import_compressai()
    import torch
    from compressai.models import ScaleHyperprior

    class LatentScalableNet(ScaleHyperprior):
        """Hyperprior codec whose first ``base_channels`` latent channels also feed a task network (``lst``)."""

        def __init__(self, N: int, M: int, base_channels: int, feature_channels: int, feature_stride: int):
            if not 0 < base_channels < M:
                raise ValueError(f"base_channels must be in 1..M-1 (M={M}), got {base_channels}")
            super().__init__(N, M)
            self.base_channels = int(base_channels)
            self.lst = latent_transform(base_channels, N, feature_channels, feature_stride)

        def forward(self, x: torch.Tensor) -> dict[str, Any]:
            """Training pass: reconstruction, ŷ, likelihoods (noise for rounding); :func:`task_features` maps
            ``y_hat[:, :base_channels]`` to the task's features."""
            y = self.g_a(x)
            z = self.h_a(torch.abs(y))
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            y_hat, y_likelihoods = self.gaussian_conditional(y, self.h_s(z_hat))
            return {"x_hat": self.g_s(y_hat), "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    return LatentScalableNet


class LatentScalable(OneMachineTask, LearnedMethod):
    """Choi & Bajić's latent-space scalable codec: base latent -> task, base + enhancement -> image.

    ``machine_task`` is the harness task the base layer serves (its network
    is cut at ``split``; None: the network's default cut, see
    :func:`bench.methods.human_machine.task_split.default_split`); ``N``, ``M`` and
    ``base_channels`` are the codec's channels. One trained network per rate point (``checkpoints``);
    :meth:`set_network` installs one directly (tests, a training loop).
    """

    family = Family.MBHD
    decodes_per_target = True
    min_div: ClassVar[int] = MIN_DIV

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        machine_task: Task | None = None,
        split: str | None = None,
        N: int = 128,
        M: int = 192,
        base_channels: int = 96,
        checkpoints: Mapping[Any, str] | str | None = None,
        checkpoint_pattern: str | None = None,
        entropy_coder: str = "ans",
        device: str = "cpu",
        description: str = "",
        **options: Any,
    ):
        super().__init__(
            name,
            rates,
            description or "latent-space scalable codec (Choi & Bajić)",
            checkpoints=checkpoints,
            checkpoint_pattern=checkpoint_pattern,
            entropy_coder=entropy_coder,
            device=device,
            **options,
        )
        bad = [r for r in self.rates if not isinstance(r, int) or r < 1]
        if bad:
            raise ValueError(f"method {name!r}: rates are trained rate points 1, 2, ...; got {bad}")
        if not 0 < base_channels < M:
            raise ValueError(f"method {name!r}: base_channels must be in 1..{M - 1}, got {base_channels}")
        self.machine_task = machine_task
        self.split = split
        self.N, self.M, self.base_channels = int(N), int(M), int(base_channels)
        self._split_net: SplitTaskNetwork | None = None

    # --- contract ----------------------------------------------------------------

    def contract(self) -> StreamContract:
        return LayeredStreams(
            layers={"base": ["header", "z", "base"], "enhancement": ["enhancement"]},
            needs={self.task_name(): "base"},
        )

    # --- networks ------------------------------------------------------------------
    @property
    def split_network(self) -> SplitTaskNetwork:
        if self._split_net is None:
            if self.machine_task is None:
                self.task_name()
            self._split_net = SplitTaskNetwork(self.machine_task, self.split)
        return self._split_net

    def new_network(self) -> Any:
        """An untrained network of this method's shape (training starts here)."""
        split = self.split_network
        return network_class()(self.N, self.M, self.base_channels, split.channels, split.stride)

    def shape_text(self) -> str:
        return f"N={self.N}, M={self.M}, base_channels={self.base_channels}, split={self.split}"

    def unavailable_reason(self) -> str | None:
        try:
            import_compressai()
        except MethodUnavailable as exc:
            return str(exc)
        return self.task_unavailable(split=True) or self.missing_weights()

    # --- coding --------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"{self.name}: expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        net = self.network(rate)
        height, width = image.shape[:2]
        pad, _ = compute_padding(height, width, min_div=self.min_div)
        with torch.inference_mode():
            x = F.pad(to_tensor(image).to(self.device), pad, mode="constant", value=0)
            y = net.g_a(x)
            z = net.h_a(torch.abs(y))
            z_strings = net.entropy_bottleneck.compress(z)
            z_hat = net.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
            indexes = net.gaussian_conditional.build_indexes(net.h_s(z_hat))
            b = self.base_channels
            base = net.gaussian_conditional.compress(y[:, :b], indexes[:, :b])
            enhancement = net.gaussian_conditional.compress(y[:, b:], indexes[:, b:])
        payload = {"z": z_strings[0], "base": base[0], "enhancement": enhancement[0]}
        header = Header(
            quality=int(rate),
            height=height,
            width=width,
            shape=tuple(int(d) for d in z.shape[-2:]),
            lengths=tuple((len(payload[n]),) for n in STREAMS[1:]),
        )
        streams = {"header": header.to_bytes(), **payload}
        return Bitstream(streams, height=height, width=width, info={"quality": int(rate)})

    def _parse(self, bitstream: Bitstream) -> Header:
        if "header" not in bitstream.streams:
            raise CodecError(f"{self.name}: bitstream has no 'header' stream (it has {list(bitstream.streams)})")
        try:
            header, _ = Header.from_bytes(bitstream.streams["header"])
        except ValueError as exc:
            raise CodecError(f"{self.name}: malformed header: {exc}") from exc
        for name, lens in zip(STREAMS[1:], header.lengths, strict=True):
            if name in bitstream.streams and len(bitstream.streams[name]) != sum(lens):
                raise CodecError(
                    f"{self.name}: stream {name!r} has {len(bitstream.streams[name])} bytes, header says {sum(lens)}"
                )
        return header

    def decode_latent(self, bitstream: Bitstream, layers: int) -> tuple[Header, torch.Tensor]:
        """The header and ŷ from the streams of the first ``layers`` layers (1: base only, 2: all)."""
        import torch

        header = self._parse(bitstream)
        needed = ["z", "base"] + (["enhancement"] if layers == 2 else [])
        missing = [n for n in needed if n not in bitstream.streams]
        if missing:
            raise CodecError(f"{self.name}: decoding {layers} layer(s) needs stream(s) {missing}")
        net = self.network(header.quality)
        with torch.inference_mode():
            z_hat = net.entropy_bottleneck.decompress([bitstream.streams["z"]], torch.Size(header.shape))
            indexes = net.gaussian_conditional.build_indexes(net.h_s(z_hat))
            b = self.base_channels
            parts = [net.gaussian_conditional.decompress([bitstream.streams["base"]], indexes[:, :b], z_hat.dtype)]
            if layers == 2:
                parts.append(
                    net.gaussian_conditional.decompress([bitstream.streams["enhancement"]], indexes[:, b:], z_hat.dtype)
                )
        return header, torch.cat(parts, 1)

    def task_prediction(self, net: Any, y_base: torch.Tensor, height: int, width: int) -> Any:
        """The task's prediction from the base latent: latent-space transform, then the rest of the task network."""
        import torch

        split = self.split_network
        with torch.inference_mode():
            features = task_features(net.lst, y_base.to(self.device), split, (height, width), self.min_div)
            raw = split.back(features.to(split.device), (height, width))
            return split.predictions(raw, (height, width))[0]

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray | HeadPrediction:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        if target != HUMAN and target != self.task_name():
            raise CodecError(f"{self.name}: serves targets {[HUMAN, self.task_name()]}, not {target!r}")
        header, y_hat = self.decode_latent(bitstream, 2 if target == HUMAN else 1)
        net = self.network(header.quality)
        if target != HUMAN:
            return HeadPrediction(self.task_prediction(net, y_hat, header.height, header.width))
        _, unpad = compute_padding(header.height, header.width, min_div=self.min_div)
        with torch.inference_mode():
            return to_uint8(F.pad(net.g_s(y_hat).clamp_(0, 1), unpad))

    def versions(self) -> dict[str, str]:
        return {p: importlib.metadata.version(p) for p in ("compressai", "torch")}

    # --- training ------------------------------------------------------------------
    def training_recipe(self, rate: int, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Any:
        """Choi & Bajić's end-to-end stage: R + λ·(D_image + γ·D_features), the task network frozen.

        ``settings``: ``lambdas`` (one per rate point), ``feature_weight`` (γ),
        ``init_from`` (optional: a hyperprior checkpoint of the same N, M to
        start the codec from, e.g. the project's own bmshj2018-hyperprior).
        """
        import torch
        import torch.nn.functional as F

        from bench.methods.learned.losses import bits_per_pixel
        from bench.training.recipe import Recipe, Stage

        adopt_task(self, tasks)
        lam = rate_lambda(self.name, settings, rate)
        gamma = float(settings.get("feature_weight", 1.0))
        self.device = device
        split = self.split_network
        split.network.to(device)
        net = self.new_network()
        if settings.get("init_from"):
            init_codec(net, settings["init_from"], self.name)
        net.to(device)

        def loss(batch: Any) -> dict[str, Any]:
            x = batch.x
            out = net(x)
            with torch.no_grad():
                target = split.front(x)
            features = task_features(net.lst, out["y_hat"][:, : self.base_channels], split, x.shape[-2:], self.min_div)
            bpp = bits_per_pixel(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
            mse = F.mse_loss(out["x_hat"], x)
            feature_mse = F.mse_loss(features, target)
            total = bpp + lam * (255**2 * mse + gamma * feature_mse)
            return {"loss": total, "bpp": bpp, "mse": mse, "feature_mse": feature_mse}

        stage = Stage("joint", trains=[""], frozen={"task": split.network}, loss=loss, aux_loss=net.aux_loss)
        return Recipe(net, [stage], validate=lambda images: self.validate(rate, net, images))

    def validate(self, rate: int, net: Any, images: Sequence[np.ndarray]) -> dict[str, float]:
        """Real coding of held-out images: bpp of each target, PSNR, task agreement with the uncompressed image."""
        self.set_network(rate, net)
        return validation_figures(self, rate, images, self.split_network)


def adopt_task(method: Any, tasks: Sequence[Task]) -> None:
    """Train for the run's task, else the method's own ``machine_task``; both given, they must be the same task.

    The run's task object is the one used (the training loop has put it on its
    device); the configs make the method's ``machine_task`` the run's ``task``.
    """
    if len(tasks) > 1:
        raise MethodUnavailable(f"{method.name}: train it for one machine task (task=<name>), got {len(tasks)}")
    if method.machine_task is None and not tasks:
        raise MethodUnavailable(f"{method.name}: no machine task to train for (task=<yolox-nano, espnet, ...>)")
    if tasks:
        if method.machine_task is not None and tasks[0].name != method.machine_task.name:
            raise MethodUnavailable(
                f"{method.name}: configured for task {method.machine_task.name!r}, the run trains {tasks[0].name!r}"
            )
        method.machine_task = tasks[0]
        method._split_net = None


def rate_lambda(name: str, settings: Mapping[str, Any], rate: int) -> float:
    """λ of ``rate`` from the recipe's ``lambdas`` list (rate points count from 1)."""
    lambdas = list(settings.get("lambdas") or [])
    if not 1 <= int(rate) <= len(lambdas):
        raise MethodUnavailable(f"{name}: recipe has lambdas {lambdas}; none for rate point {rate}")
    return float(lambdas[int(rate) - 1])


def init_codec(net: Any, path: str, name: str) -> None:
    """Start ``net``'s hyperprior codec from a CompressAI-layout checkpoint (the new parts stay as built)."""
    import torch
    from compressai.zoo import load_state_dict as rename_legacy_keys

    from bench.methods.learned.compressai import state_dict_of

    if not os.path.isfile(path):
        raise MethodUnavailable(
            f"{name}: init_from checkpoint not found: {path} (train or fetch bmshj2018-hyperprior-ours, "
            "or set recipe.init_from=null to start the codec from scratch)"
        )
    try:
        state = rename_legacy_keys(dict(state_dict_of(torch.load(path, map_location="cpu", weights_only=True))))
    except Exception as exc:
        raise MethodUnavailable(
            f"{name}: cannot read init_from checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    own = net.state_dict()
    tables = ("_cdf", "_offset", "scale_table")  # entropy tables: CompressAI resizes them when loading
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not any(t in k for t in tables)]
    if bad:
        raise MethodUnavailable(f"{name}: init_from {path} has other shapes for {bad[:5]} (check N and M)")
    missing, _ = net.load_state_dict(state, strict=False)
    untouched = [k for k in missing if not k.startswith("lst.")]
    if untouched:
        raise MethodUnavailable(f"{name}: init_from {path} lacks codec weights {untouched[:5]}")


def validation_figures(
    method: Any, rate: int, images: Sequence[np.ndarray], split: SplitTaskNetwork
) -> dict[str, float]:
    """Encode, count bytes and decode each image: mean bpp per target, human PSNR, task agreement."""
    from bench.metrics.image import psnr

    task = method.machine_task
    bpp_h, bpp_t, psnrs, preds, refs = [], [], [], {}, {}
    for i, image in enumerate(images):
        written = method.encode(image, rate)
        bpp_h.append(written.bpp(method.streams_for(HUMAN, written)))
        bpp_t.append(written.bpp(method.streams_for(task.name, written)))
        received = Bitstream({n: written.streams[n] for n in method.streams_for(task.name, written)}, *image.shape[:2])
        psnrs.append(psnr(method.decode(written, HUMAN), image))
        preds[str(i)] = method.decode(received, task.name).value
        refs[str(i)] = task.reference_from_prediction(split.predict_images([image])[0])
    figures = {
        "bpp_human": float(np.mean(bpp_h)),
        f"bpp_{task.name}": float(np.mean(bpp_t)),
        "psnr": float(np.mean(psnrs)),
    }
    figures.update({f"{task.name}/{k}": float(v) for k, v in task.evaluate(preds, refs).items()})
    return figures


def crop_to_image(features: torch.Tensor, height: int, width: int, stride: int, min_div: int) -> torch.Tensor:
    """Features of the padded image -> the features over the image itself (padding is centred, as the codec's)."""
    from compressai.ops import compute_padding

    (left, _, top, _), _ = compute_padding(height, width, min_div=min_div)
    row, col = top // stride, left // stride
    return features[..., row : row + math.ceil(height / stride), col : col + math.ceil(width / stride)]
