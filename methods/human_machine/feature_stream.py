"""Feature streams beside an image codec (survey 000, MBID): one stream for people, one for the machine.

The human stream is any image codec of the harness, configured by name
(``human_codec``, e.g. the ``jpeg`` method's config), its bitstream carried
in one ``human`` stream (a small container: stream count, names and
lengths as varints, then the codec's streams; a few bytes per image). The
machine stream is independent of it and the task is charged only that:

- :class:`FeatureStream`: the task network's intermediate features at a cut
  (:mod:`bench.methods.human_machine.task_split`; by default YOLOX-Nano after dark3, or
  ESPNet's ``level3`` with ``task=espnet``) through a learned entropy
  bottleneck (an analysis transform, CompressAI's ``EntropyBottleneck``
  with real rANS bytes, a synthesis transform); the decoder runs the rest of
  the task network from the decoded features and returns its prediction.
  Trained with loss = R + λ·MSE(features), the task network frozen.
- :class:`DescriptorStream`: in the spirit of MPEG CDVS, OpenCV keypoints
  (ORB or SIFT) with their descriptors, coordinates quantised to a grid,
  descriptors optionally quantised, coded compactly (raster-ordered
  coordinate deltas and descriptor bytes as varints / bytes, then LZMA2 from
  Python's ``lzma``, a real LZ77 + range coder, chosen because it is in the
  standard library and decodes bit-exactly everywhere). The decoder returns
  the keypoints and descriptors for :mod:`bench.tasks.matching`.

Rate point ``k`` (1, 2, ...) pairs the human codec's ``k``-th rate with the
machine stream's ``k``-th setting (a trained bottleneck, or a keypoint budget).
"""

from __future__ import annotations

import functools
import importlib.metadata
import lzma
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, HeadPrediction, Method, MethodUnavailable
from bench.methods.container import (
    ContainerError,
    get_varint,
    pack_streams,
    put_varint,
    read_header,
    unpack_streams,
    write_header,
)
from bench.methods.families import IndependentStreams, StreamContract
from bench.methods.human_machine.one_task import OneMachineTask
from bench.methods.human_machine.task_split import SplitTaskNetwork
from bench.methods.learned.base import LearnedMethod
from bench.methods.learned.compressai import import_compressai
from bench.tasks.base import Task

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1


# --- the human stream's container ------------------------------------------------------


def header_of(data: bytes, count: int, what: str) -> tuple[list[int], int]:
    """A machine stream's header values (the shared container syntax); CodecError naming ``what``."""
    try:
        return read_header(data, FORMAT_VERSION, count, what)
    except ContainerError as exc:
        raise CodecError(str(exc)) from exc


# --- the MBID frame ------------------------------------------------------------------------


class _ImagePlusMachineStream(OneMachineTask, Method):
    """An image codec's stream for the human and an independent machine stream for one task."""

    family = Family.MBID
    decodes_per_target = True
    machine_stream: str = "machine"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        human_codec: Method,
        machine_task: Task | None,
        description: str = "",
        **options: Any,
    ):
        super().__init__(name, rates, description, **options)
        bad = [r for r in self.rates if not isinstance(r, int) or r < 1]
        if bad:
            raise ValueError(f"method {name!r}: rates are rate points 1, 2, ...; got {bad}")
        if not isinstance(human_codec, Method):
            raise ValueError(f"method {name!r}: human_codec must be a method config (e.g. jpeg's), got {human_codec!r}")
        if max(self.rates) > len(human_codec.rates):
            raise ValueError(
                f"method {name!r}: rate point {max(self.rates)} has no human codec rate: "
                f"{human_codec.name} has {len(human_codec.rates)} ({human_codec.rates})"
            )
        self.human_codec = human_codec
        self.machine_task = machine_task

    def contract(self) -> StreamContract:
        return IndependentStreams({HUMAN: ["human"], self.task_name(): [self.machine_stream]})

    def human_rate(self, rate: int) -> Any:
        return self.human_codec.rates[int(rate) - 1]

    def unavailable_reason(self) -> str | None:
        try:
            self.task_name()
        except MethodUnavailable as exc:
            return str(exc)
        why = self.human_codec.unavailable_reason()
        if why:
            return f"{self.name}: human codec {self.human_codec.name!r} cannot run: {why}"
        why = self.machine_task.unavailable_reason()
        return f"{self.name}: machine task {self.task_name()!r} cannot run: {why}" if why else None

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        if rate not in self.rates:
            raise CodecError(f"{self.name}: no rate point {rate!r} (rates {self.rates})")
        human = self.human_codec.encode(image, self.human_rate(rate))
        streams = {"human": pack_streams(human.streams), self.machine_stream: self.encode_machine(image, int(rate))}
        h, w = image.shape[:2]
        return Bitstream(streams, height=h, width=w, info={"human_rate": self.human_rate(rate)})

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray | HeadPrediction:
        if target == HUMAN:
            try:
                streams = unpack_streams(bitstream.streams["human"])
            except (KeyError, ValueError) as exc:
                raise CodecError(f"{self.name}: bad human stream: {exc}") from exc
            return self.human_codec.decode(Bitstream(streams, bitstream.height, bitstream.width), HUMAN)
        if target != self.task_name():
            raise CodecError(f"{self.name}: serves targets {[HUMAN, self.task_name()]}, not {target!r}")
        if self.machine_stream not in bitstream.streams:
            raise CodecError(f"{self.name}: no {self.machine_stream!r} stream (got {list(bitstream.streams)})")
        return HeadPrediction(self.decode_machine(bitstream.streams[self.machine_stream]))

    def encode_machine(self, image: np.ndarray, rate: int) -> bytes:
        raise NotImplementedError

    def decode_machine(self, data: bytes) -> Any:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {f"human:{k}": v for k, v in self.human_codec.versions().items()}


# --- (a) learned feature stream -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def feature_codec_class() -> type:
    """The feature codec class, built on first use so that importing this module needs no torch."""
    import_compressai()
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN
    from compressai.models import CompressionModel
    from torch import nn

    class FeatureCodec(CompressionModel):
        """Features -> ``g_a`` -> entropy bottleneck (factorized prior) -> ``g_s`` -> features."""

        def __init__(self, channels: int, hidden: int, latent_channels: int):
            super().__init__()
            self.entropy_bottleneck = EntropyBottleneck(latent_channels)
            self.g_a = nn.Sequential(
                nn.Conv2d(channels, hidden, 3, padding=1), GDN(hidden), nn.Conv2d(hidden, latent_channels, 3, padding=1)
            )
            self.g_s = nn.Sequential(
                nn.Conv2d(latent_channels, hidden, 3, padding=1),
                GDN(hidden, inverse=True),
                nn.Conv2d(hidden, channels, 3, padding=1),
            )

        def forward(self, features: Any) -> dict[str, Any]:
            y_hat, likelihoods = self.entropy_bottleneck(self.g_a(features))
            return {"features": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}

    return FeatureCodec


class FeatureStream(_ImagePlusMachineStream, LearnedMethod):
    """MBID: an image codec for people + the task network's features through a learned entropy bottleneck."""

    machine_stream = "features"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        human_codec: Method,
        machine_task: Task | None = None,
        split: str | None = None,
        hidden_channels: int = 128,
        latent_channels: int = 64,
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
            human_codec,
            machine_task,
            description or f"{human_codec.name} + learned feature stream",
            checkpoints=checkpoints,
            checkpoint_pattern=checkpoint_pattern,
            entropy_coder=entropy_coder,
            device=device,
            **options,
        )
        self.split = split
        self.hidden_channels = int(hidden_channels)
        self.latent_channels = int(latent_channels)
        self._split_net: SplitTaskNetwork | None = None

    @property
    def split_network(self) -> SplitTaskNetwork:
        if self._split_net is None:
            self.task_name()
            self._split_net = SplitTaskNetwork(self.machine_task, self.split)
        return self._split_net

    def new_network(self) -> Any:
        """An untrained feature codec for the split's channels (training starts here)."""
        return feature_codec_class()(self.split_network.channels, self.hidden_channels, self.latent_channels)

    def shape_text(self) -> str:
        return f"split={self.split}, hidden_channels={self.hidden_channels}, latent_channels={self.latent_channels}"

    def unavailable_reason(self) -> str | None:
        why = super().unavailable_reason()
        if why:
            return why
        try:
            import_compressai()
        except MethodUnavailable as exc:
            return str(exc)
        why = self.split_network.unavailable_reason()
        if why:
            return f"{self.name}: machine task {self.task_name()!r} cannot run: {why}"
        return self.missing_weights()

    def features(self, image: np.ndarray) -> torch.Tensor:
        """The task network's features of ``image`` at the cut (through the task's own preprocessing)."""
        import torch

        with torch.inference_mode():
            return self.split_network.front_image(image)

    def encode_machine(self, image: np.ndarray, rate: int) -> bytes:
        import torch

        net = self.network(rate)
        with torch.inference_mode():
            y = net.g_a(self.features(image).to(self.device))
            strings = net.entropy_bottleneck.compress(y)
        h, w = image.shape[:2]
        return write_header(FORMAT_VERSION, (rate, h, w, y.shape[-2], y.shape[-1])) + strings[0]

    def decode_features(self, data: bytes) -> tuple[list[int], torch.Tensor]:
        """(rate, height, width, latent h, latent w) and the decoded features of a ``features`` stream."""
        import torch

        (rate, h, w, lh, lw), pos = header_of(data, 5, f"{self.name} features")
        net = self.network(rate)
        with torch.inference_mode():
            y_hat = net.entropy_bottleneck.decompress([data[pos:]], (lh, lw))
            return [rate, h, w, lh, lw], net.g_s(y_hat)

    def decode_machine(self, data: bytes) -> Any:
        import torch

        (_, h, w, _, _), features = self.decode_features(data)
        split = self.split_network
        with torch.inference_mode():
            return split.predictions(split.back(features.to(split.device), (h, w)), (h, w))[0]

    def versions(self) -> dict[str, str]:
        """The human codec's, CompressAI's and torch's, and the task network's (its front makes the features)."""
        task = {} if self.machine_task is None else self.machine_task.versions()
        return {
            **super().versions(),
            **{p: importlib.metadata.version(p) for p in ("compressai", "torch")},
            **{f"task:{k}": v for k, v in task.items()},
        }

    # --- training ------------------------------------------------------------------
    def training_recipe(self, rate: int, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Any:
        """One stage, ``bottleneck``: R + λ·MSE(features), the task network frozen.

        ``settings``: ``lambdas`` (one per rate point). R is counted per image
        pixel, so λ trades the same bpp the harness reports.
        """
        import torch
        import torch.nn.functional as F

        from bench.methods.human_machine.latent_scalable import adopt_task, rate_lambda, validation_figures
        from bench.methods.learned.losses import bits_per_pixel
        from bench.training.recipe import Recipe, Stage

        adopt_task(self, tasks)
        lam = rate_lambda(self.name, settings, rate)
        self.device = device
        split = self.split_network
        split.network.to(device)
        net = self.new_network().to(device)

        def loss(batch: Any) -> dict[str, Any]:
            x = batch.x
            with torch.no_grad():
                features = split.front(x)
            out = net(features)
            bpp = bits_per_pixel(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
            mse = F.mse_loss(out["features"], features)
            return {"loss": bpp + lam * mse, "bpp": bpp, "feature_mse": mse}

        def validate(images: Sequence[np.ndarray]) -> dict[str, float]:
            self.set_network(rate, net)
            return validation_figures(self, rate, images, split)

        stage = Stage("bottleneck", trains=[""], frozen={"task": split.network}, loss=loss, aux_loss=net.aux_loss)
        return Recipe(net, [stage], validate=validate)


# --- (b) CDVS-like descriptor stream --------------------------------------------------------


#: LZMA2 with no container header: the stream's own header says what follows
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
#: coordinates are coded in 1/16 pixel units of the grid step
_STEP_UNITS = 16


class DescriptorStream(_ImagePlusMachineStream):
    """MBID: an image codec for people + compactly coded local descriptors (ORB / SIFT) for matching.

    ``keypoints[k-1]`` is the keypoint budget of rate point ``k``;
    ``coord_step`` the grid keypoint positions are quantised to (pixels, a
    multiple of 1/16); ``descriptor_step`` the uniform quantiser step of
    each descriptor byte (1 = lossless; binary ORB descriptors allow only 1).
    """

    machine_stream = "descriptors"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        human_codec: Method,
        machine_task: Task | None = None,
        detector: str = "orb",
        keypoints: Sequence[int] = (50, 100, 200, 400),
        coord_step: float = 1.0,
        descriptor_step: int = 1,
        description: str = "",
        **options: Any,
    ):
        from bench.tasks.matching import DETECTORS

        super().__init__(
            name,
            rates,
            human_codec,
            machine_task,
            description or f"{human_codec.name} + {detector.upper()} descriptor stream (CDVS-like)",
            **options,
        )
        if detector not in DETECTORS:
            raise ValueError(f"method {name!r}: unknown detector {detector!r}; known: {sorted(DETECTORS)}")
        if max(self.rates) > len(keypoints):
            raise ValueError(
                f"method {name!r}: rate point {max(self.rates)} has no keypoint budget in {list(keypoints)}"
            )
        units = coord_step * _STEP_UNITS
        if coord_step <= 0 or abs(units - round(units)) > 1e-9:
            raise ValueError(f"method {name!r}: coord_step must be a positive multiple of 1/16, got {coord_step}")
        if not 1 <= int(descriptor_step) <= 128 or (DETECTORS[detector][1] and int(descriptor_step) != 1):
            raise ValueError(f"method {name!r}: descriptor_step must be 1..128 (1 for binary {detector} descriptors)")
        self.uses_torch = human_codec.uses_torch
        self.detector = detector
        self.keypoints = [int(k) for k in keypoints]
        self.coord_units = int(round(units))
        self.descriptor_step = int(descriptor_step)

    def unavailable_reason(self) -> str | None:
        why = super().unavailable_reason()
        if why:
            return why
        if getattr(self.machine_task, "kind", None) != "matching":
            return (
                f"{self.name}: the descriptor stream serves a matching task (task=matching), not {self.task_name()!r}"
            )
        if getattr(self.machine_task, "detector", self.detector) != self.detector:
            theirs = self.machine_task.detector
            return f"{self.name}: codes {self.detector} descriptors but task {self.task_name()!r} matches {theirs}"
        return None

    def quantise(self, features: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """``features`` as the decoder will see them (grid positions, dequantised descriptors, raster order),
        with the integer grid positions and descriptor symbols that are coded."""
        from bench.tasks.matching import LocalFeatures

        step = self.coord_units / _STEP_UNITS
        q = np.rint(features.points / step).astype(np.int64)
        q = np.clip(q, 0, None)
        order = np.lexsort((q[:, 0], q[:, 1])) if len(q) else np.zeros(0, dtype=np.int64)
        symbols = features.descriptors[order] // self.descriptor_step
        return (
            LocalFeatures(
                features.detector,
                features.height,
                features.width,
                q[order].astype(np.float64) * step,
                self._dequantise(symbols),
            ),
            q[order],
            symbols,
        )

    def _dequantise(self, symbols: np.ndarray) -> np.ndarray:
        if self.descriptor_step == 1:
            return symbols.astype(np.uint8)
        values = symbols.astype(np.int64) * self.descriptor_step + self.descriptor_step // 2
        return np.clip(values, 0, 255).astype(np.uint8)

    def encode_machine(self, image: np.ndarray, rate: int) -> bytes:
        from bench.tasks.matching import extract

        features = extract(image, self.detector, self.keypoints[rate - 1])
        _, grid, symbols = self.quantise(features)
        body = bytearray()
        previous_y = 0
        for x, y in grid:  # raster order: y deltas are small and non-negative
            put_varint(body, int(y) - previous_y)
            put_varint(body, int(x))
            previous_y = int(y)
        body += symbols.astype(np.uint8).tobytes()
        h, w = image.shape[:2]
        header = write_header(FORMAT_VERSION, (h, w, len(grid), self.coord_units, self.descriptor_step))
        return header + lzma.compress(bytes(body), format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)

    def decode_descriptors(self, data: bytes) -> Any:
        """The :class:`~bench.tasks.matching.LocalFeatures` a ``descriptors`` stream holds."""
        from bench.tasks.matching import DETECTORS, LocalFeatures

        (h, w, n, units, dstep), pos = header_of(data, 5, f"{self.name} descriptors")
        try:
            body = lzma.decompress(data[pos:], format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        except lzma.LZMAError as exc:
            raise CodecError(f"{self.name}: corrupt descriptor stream: {exc}") from exc
        grid = np.zeros((n, 2), dtype=np.int64)
        p, y = 0, 0
        try:
            for i in range(n):
                dy, p = get_varint(body, p)
                x, p = get_varint(body, p)
                y += dy
                grid[i] = (x, y)
        except ValueError as exc:
            raise CodecError(f"{self.name}: descriptor stream ends inside keypoint {i}: {exc}") from exc
        dim = DETECTORS[self.detector][0]
        if len(body) - p != n * dim:
            raise CodecError(f"{self.name}: {len(body) - p} descriptor bytes for {n} keypoints of {dim} bytes")
        symbols = np.frombuffer(body[p:], dtype=np.uint8).reshape(n, dim)
        if dstep != self.descriptor_step:
            raise CodecError(f"{self.name}: stream has descriptor step {dstep}, this decoder {self.descriptor_step}")
        return LocalFeatures(
            self.detector, h, w, grid.astype(np.float64) * units / _STEP_UNITS, self._dequantise(symbols)
        )

    def decode_machine(self, data: bytes) -> Any:
        return self.decode_descriptors(data).to_json()

    def versions(self) -> dict[str, str]:
        import cv2

        return {**super().versions(), "opencv": cv2.__version__}
