"""SICMH as a harness method: a two-layer MBHD codec whose base layer is side information alone.

Zhang, Liu & Peng, "Side information-driven image coding for hybrid
machine–human vision" (EURASIP JIVP 2025; seed 001). The networks are in
:mod:`bench.methods.human_machine.sicmh_model`; this module is the bitstream, the family
contract, the per-target decode and the training recipe.

Streams, in layer order, each real entropy-coded bytes:

- base layer: ``base.header`` (format version, rate point, image size, ĥ2's
  shape and the byte length of every string; unsigned LEB128 varints),
  ``base.h2`` (ĥ2, factorized prior), ``base.h1`` (ĥ1, one string per CAHCM
  channel group, concatenated);
- enhancement layer: ``enh.yr`` (ŷ_r, the coded residue x − x̂_c).

A machine task is charged the base layer and decodes only it: ĥ1, ĥ2 → the
task's multi-scale fusion block → h̃'' (image-sized, three channels), which
the paper feeds to its task networks; here it goes, clamped to [0, 1] and
rounded to 8 bits, to the harness's task network (``decode`` returns it as an
RGB image). The human is charged both layers and gets x̂_f = x̂_c + x̂_r; with
``human_reconstruction: coarse`` the codec writes the base layer only and
the human gets the coarse reconstruction x̂_c (the paper's Fig. 16 curve).

Training follows §3 and §4 stage by stage (:meth:`SICMH.training_recipe`):

1. ``side`` (Eq. 12): A and the task's fusion block, λ_side·R_side + task loss;
2. ``heads`` (Eqs. 13, 14): A frozen, the task fusion blocks, task loss;
3. ``coarse`` (Eq. 20): A and the task blocks frozen, the coarse fusion block
   and C, MSE(x, x̂_c);
4. ``fine`` (Eq. 25): A, B and C frozen, D, MSE(x, x̂_f) + λ·R.

Where this differs from the paper: its task networks (Modified TrSeg, ViT)
are fine-tuned with the fusion blocks; here the harness's task networks stay
frozen, so every method is scored by the same networks, and the task loss is
taken against that network's own output on the uncompressed crop
(:mod:`bench.tasks.losses`; the harness's training data are images without
labels). Channel counts are ours: the paper's text gives none.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, MethodUnavailable
from bench.methods.families import LayeredStreams, StreamContract
from bench.methods.human_machine.one_task import OneMachineTask
from bench.methods.learned.base import LearnedMethod
from bench.methods.learned.compressai import (
    Header,
    import_compressai,
    to_tensor,
    to_uint8,
)

if TYPE_CHECKING:
    import torch

    from bench.methods.human_machine.sicmh_model import SICMHNetwork
    from bench.tasks.base import Task
    from bench.training.recipe import Recipe

#: the streams of each layer, in layer order
BASE_STREAMS = ("base.header", "base.h2", "base.h1")
ENHANCEMENT_STREAMS = ("enh.yr",)
#: the reconstructions: x̂_f from both layers, x̂_c from the base layer (its fusion head is also called so)
FINE = "fine"
COARSE = "coarse"
HUMAN_RECONSTRUCTIONS = (FINE, COARSE)
#: image sides are padded to a multiple of this (ĥ2 is at 1/64 of the image)
MIN_DIV = 64


@dataclass(frozen=True)
class Architecture:
    """Channel counts of an SICMH network (the paper's figures give the layer types, not the widths).

    Defaults follow the low-rate model of the coarse-to-fine codec SICMH is
    initialised from (Hu et al. 2020): 192-channel transforms, 256-channel h1,
    128-channel h2. ``heads`` are the task fusion blocks (the paper trains one
    for segmentation and one for classification); the ``coarse`` block is
    always there.
    """

    width: int = 192
    latent_channels: int = 192
    h1_channels: int = 256
    h2_channels: int = 128
    h1_groups: int = 4
    prediction_width: int = 192
    fuse_channels: int = 32
    heads: tuple[str, ...] = ("segmentation", "classification")

    def __post_init__(self) -> None:
        for name in (
            "width",
            "latent_channels",
            "h1_channels",
            "h2_channels",
            "h1_groups",
            "prediction_width",
            "fuse_channels",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SICMH architecture: {name} must be a positive integer, got {getattr(self, name)}")
        if self.h1_channels % self.h1_groups:
            raise ValueError(
                f"SICMH architecture: h1_channels ({self.h1_channels}) must split into h1_groups "
                f"({self.h1_groups}) equal channel groups"
            )
        heads = tuple(self.heads)
        if (
            {COARSE, FINE} & set(heads)
            or len(set(heads)) != len(heads)
            or not all(isinstance(h, str) and h for h in heads)
        ):
            raise ValueError(
                f"SICMH architecture: heads must be distinct non-empty names other than {COARSE!r}, {FINE!r}"
            )
        object.__setattr__(self, "heads", heads)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Architecture:
        """From a config mapping; unknown keys are an error naming them."""
        config = dict(config or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"SICMH architecture: unknown key(s) {unknown}; known: {sorted(known)}")
        if "heads" in config:
            config["heads"] = tuple(config["heads"])
        return cls(**config)

    def to_config(self) -> dict[str, Any]:
        out = asdict(self)
        out["heads"] = list(self.heads)
        return out


class SICMH(OneMachineTask, LearnedMethod):
    """SICMH (seed 001): base layer = side information (ĥ2, ĥ1) for tasks and x̂_c; enhancement = residue.

    ``rates`` are trained rate points 1, 2, ... (one network each, weights
    from ``checkpoints``: a mapping rate -> file or a folder with files named
    by ``checkpoint_pattern``). ``architecture`` gives the channel counts and
    task heads (:class:`Architecture`).
    ``task_heads`` maps a harness task name to the fusion head that serves it;
    a task named like a head uses that head, any other task ``default_head``
    (none: such a task is refused). ``machine_task`` is the task the weights
    are trained for (the configs make it the run's ``task=``, else ESPNet:
    the paper's task is segmentation); training uses it when the run names
    no task, and a run without ``task=`` measures it (:meth:`served_tasks`).
    """

    family = Family.MBHD
    decodes_per_target = True
    min_div: ClassVar[int] = MIN_DIV

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        architecture: Mapping[str, Any] | None = None,
        task_heads: Mapping[str, str] | None = None,
        default_head: str | None = None,
        human_reconstruction: str = "fine",
        machine_task: Task | None = None,
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
            description or "SICMH: side-information base layer + residue enhancement",
            checkpoints=checkpoints,
            checkpoint_pattern=checkpoint_pattern,
            entropy_coder=entropy_coder,
            device=device,
            **options,
        )
        bad = [r for r in self.rates if not isinstance(r, int) or isinstance(r, bool) or r < 1]
        if bad:
            raise ValueError(f"method {name!r}: rates are trained rate points 1, 2, ...; got {bad}")
        try:
            self.architecture = Architecture.from_config(dict(architecture or {}))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"method {name!r}: {exc}") from exc
        heads = set(self.architecture.heads)
        self.task_heads = dict(task_heads or {})
        unknown = {t: h for t, h in self.task_heads.items() if h not in heads}
        if default_head is not None and default_head not in heads:
            unknown["<default_head>"] = default_head
        if unknown:
            raise ValueError(f"method {name!r}: task_heads name unknown head(s) {unknown}; heads: {sorted(heads)}")
        self.default_head = default_head
        if human_reconstruction not in HUMAN_RECONSTRUCTIONS:
            raise ValueError(
                f"method {name!r}: human_reconstruction must be one of {HUMAN_RECONSTRUCTIONS}, "
                f"not {human_reconstruction!r}"
            )
        self.human_reconstruction = human_reconstruction
        self.machine_task = machine_task

    # --- the family contract --------------------------------------------------------
    def layers(self) -> dict[str, list[str]]:
        """Layer name -> its streams, base first (coarse mode writes the base layer only)."""
        out = {"base": list(BASE_STREAMS)}
        if self.human_reconstruction == "fine":
            out["enhancement"] = list(ENHANCEMENT_STREAMS)
        return out

    def contract(self) -> StreamContract:
        """MBHD: every machine task needs the base layer; the human every layer."""
        return LayeredStreams(layers=self.layers(), needs={}, default_layer="base")

    def head_for(self, task: str) -> str:
        """The fusion head that serves ``task``."""
        if task in self.task_heads:
            return self.task_heads[task]
        if task in self.architecture.heads:
            return task
        if self.default_head is not None:
            return self.default_head
        raise CodecError(
            f"{self.name}: no fusion head for task {task!r}; heads {list(self.architecture.heads)} "
            f"(map it with task_heads: {{{task}: <head>}} or set default_head)"
        )

    # --- networks --------------------------------------------------------------------
    def new_network(self) -> SICMHNetwork:
        """An untrained network of this method's architecture (training starts here)."""
        import_compressai()
        from bench.methods.human_machine.sicmh_model import SICMHNetwork

        return SICMHNetwork(self.architecture)

    def shape_text(self) -> str:
        return f"the configured architecture {self.architecture.to_config()}"

    def unavailable_reason(self) -> str | None:
        try:
            import_compressai()
            if self.machine_task is not None:
                self.head_for(self.machine_task.name)
        except (MethodUnavailable, CodecError) as exc:
            return str(exc)
        return self.missing_weights()

    # --- coding ------------------------------------------------------------------------
    def _padded(self, image: np.ndarray) -> torch.Tensor:
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"{self.name}: expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        pad, _ = compute_padding(image.shape[0], image.shape[1], min_div=self.min_div)
        return F.pad(to_tensor(image).to(self.device), pad, mode="constant", value=0)

    def _unpadded(self, x: torch.Tensor, height: int, width: int) -> np.ndarray:
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        _, unpad = compute_padding(height, width, min_div=self.min_div)
        return to_uint8(F.pad(x, unpad).clamp(0, 1))

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import torch

        net = self.network(rate)
        height, width = image.shape[:2] if image.ndim >= 2 else (0, 0)
        x = self._padded(image)
        try:
            with torch.inference_mode():
                if self.human_reconstruction == "fine":
                    out = net.compress(x)
                else:
                    out = net.side.compress(x)
                    out["h2_shape"] = tuple(out["h2_hat"].shape[-2:])
        except Exception as exc:
            raise CodecError(f"{self.name}: compress failed on a {height}x{width} image: {exc}") from exc
        h2 = bytes(out["h2"][0])
        h1 = [bytes(group[0]) for group in out["h1"]]
        header = Header(
            quality=int(rate),
            height=height,
            width=width,
            shape=tuple(int(s) for s in out["h2_shape"]),
            lengths=((len(h2),), tuple(len(s) for s in h1)),
        )
        streams = {"base.header": header.to_bytes(), "base.h2": h2, "base.h1": b"".join(h1)}
        if self.human_reconstruction == "fine":
            streams["enh.yr"] = bytes(out["yr"][0])
        return Bitstream(streams, height=height, width=width, info={"rate": int(rate)})

    def parse_base(self, bitstream: Bitstream) -> tuple[Header, bytes, list[bytes]]:
        """The header, ĥ2's string and ĥ1's per-group strings; CodecError when the base layer is malformed."""
        missing = [n for n in BASE_STREAMS if n not in bitstream.streams]
        if missing:
            raise CodecError(f"{self.name}: the base layer lacks stream(s) {missing} (got {list(bitstream.streams)})")
        data = bitstream.streams["base.header"]
        try:
            header, used = Header.from_bytes(data)
        except ValueError as exc:
            raise CodecError(f"{self.name}: malformed base.header: {exc}") from exc
        if used != len(data):
            raise CodecError(f"{self.name}: {len(data) - used} stray bytes after base.header")
        if (header.height, header.width) != (bitstream.height, bitstream.width):
            raise CodecError(
                f"{self.name}: base.header says {header.height}x{header.width}, "
                f"the bitstream {bitstream.height}x{bitstream.width}"
            )
        if len(header.lengths) != 2 or len(header.lengths[0]) != 1 or len(header.shape) != 2:
            raise CodecError(f"{self.name}: base.header does not describe an SICMH base layer")
        h2, h1_all = bitstream.streams["base.h2"], bitstream.streams["base.h1"]
        if len(h2) != header.lengths[0][0] or len(h1_all) != sum(header.lengths[1]):
            raise CodecError(
                f"{self.name}: base.h2 / base.h1 have {len(h2)} / {len(h1_all)} bytes, base.header says "
                f"{header.lengths[0][0]} / {sum(header.lengths[1])}"
            )
        h1, pos = [], 0
        for n in header.lengths[1]:
            h1.append(h1_all[pos : pos + n])
            pos += n
        return header, h2, h1

    def reconstruct(self, bitstream: Bitstream, output: str) -> np.ndarray:
        """``fine`` (x̂_f, both layers), ``coarse`` (x̂_c, base layer) or a head's h̃'' (base layer), as RGB."""
        import torch

        header, h2, h1 = self.parse_base(bitstream)
        if output not in (FINE, COARSE, *self.architecture.heads):
            raise CodecError(f"{self.name}: no output {output!r}; outputs: {[FINE, COARSE, *self.architecture.heads]}")
        if output == FINE and "enh.yr" not in bitstream.streams:
            raise CodecError(f"{self.name}: the fine reconstruction needs the enhancement layer (enh.yr)")
        net = self.network(header.quality)
        try:
            with torch.inference_mode():
                h1_hat, h2_hat = net.decompress_base([h2], [[s] for s in h1], header.shape)
                if output == FINE:
                    x = net.decompress_fine([bitstream.streams["enh.yr"]], h1_hat, h2_hat)
                elif output == COARSE:
                    x = net.coarse_reconstruction(h1_hat, h2_hat)
                else:
                    x = net.machine_input(output, h1_hat, h2_hat)
                return self._unpadded(x, header.height, header.width)
        except Exception as exc:
            raise CodecError(f"{self.name}: decoding {output!r} failed: {type(exc).__name__}: {exc}") from exc

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """Human: x̂_f (x̂_c with ``human_reconstruction: coarse``); a task: its fusion head's h̃'' as RGB."""
        return self.reconstruct(bitstream, self.human_reconstruction if target == HUMAN else self.head_for(target))

    def versions(self) -> dict[str, str]:
        return {p: importlib.metadata.version(p) for p in ("compressai", "torch")}

    # --- training ------------------------------------------------------------------------
    def training_recipe(self, rate: Any, tasks: Sequence[Task], settings: Mapping[str, Any], device: str) -> Recipe:
        """The paper's stages (§3.1.3, §3.2, §3.3) for rate point ``rate``; see
        :mod:`bench.methods.human_machine.sicmh_training`."""
        from bench.methods.human_machine.sicmh_training import build_recipe

        return build_recipe(self, rate, tasks, settings, device)
