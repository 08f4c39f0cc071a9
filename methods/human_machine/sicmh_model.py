"""SICMH's networks (Zhang, Liu & Peng, EURASIP JIVP 2025; seed 001), on CompressAI building blocks.

Side-information-driven image coding for hybrid machine–human vision is a
two-layer scalable (MBHD) codec. Module names follow the paper's Fig. 4 and
its four parts of Fig. 23, which are also what the training stages train or
freeze:

- **A, the side information** (``side``, Fig. 4 black): ``Encoder`` (x → y,
  never transmitted), ``Encoder_h1`` (y → h1), ``Encoder_h2`` (h1 → h2), Eqs.
  1–3. ĥ2 is coded with a factorized prior (CompressAI ``EntropyBottleneck``);
  ĥ1 with CompressAI's ``GaussianConditional`` whose (μ, σ) come from the
  channel-wise auto-regressive hyper-prior context model (CAHCM, §3.1.2): ĥ1
  is split into channel groups, each coded into its own string, group k
  predicted from h2p (``Decoder_h2`` + Prediction Model on ĥ2) and the k − 1
  groups decoded before it (the channel context of Minnen & Singh 2020).
- **B, the multi-scale feature fusion block** (``fusion[head]``, Fig. 4 blue,
  Eqs. 4–11): ĥ1 and ĥ2 fused at three scales into h̃'', an image-sized
  three-channel tensor that the task network reads. Each head has its own
  block (§6.2: B is trained per task: a + 3b + c + d), ``coarse`` included.
- **C, the coarse reconstruction** (``coarse``, Fig. 4 yellow, Eqs. 15–19):
  ``Decoder``(h̃') + FuseConcat(h_sum, ``Decoder_h1``(ĥ1), ``Decoder_h2c``(ĥ2))
  + h̃'' = x̂_c, from the base layer alone.
- **D, the enhancement layer** (``enhancement``, Fig. 4 red, Eqs. 21–24):
  ``Encoder_r`` codes the residue x − x̂_c as ŷ_r, Gaussian with (μ, σ) from
  ĥ1 through ``Decoder_h1r`` + a Prediction Model; ``Decoder_r`` gives x̂_r
  and x̂_f = x̂_c + x̂_r.

The layer structures follow the paper's Figs. 5, 6 and 9 and the coarse-to-
fine codec they come from (Hu et al., AAAI 2020, the paper's [5]): encoders
are four stride-2 5×5 convolutions with GDN (Fig. 5a); the hyper encoders a
3×3 convolution, Space2Depth and three 1×1 convolutions with ReLU (5b, 5c);
the hyper decoders three 1×1 transposed convolutions with ReLU, Depth2Space
and a 3×3 transposed convolution (6a, 6b); the decoders four stride-2 5×5
transposed convolutions with IGDN (6c); the Prediction Model gathers each
position's 5×5 neighbourhood (Unfold(5)) and maps it through three 3×3
convolutions and a linear layer to that position's parameters (Fig. 9).
Channel counts are not in the paper's text; ours are in :class:`bench.methods.human_machine.sicmh.Architecture`.

Images are float tensors in [0, 1] whose sides are multiples of
:data:`STRIDE` (the method adapter pads). Rounding is CompressAI's: a
Gaussian-conditional latent is ``round(v − μ) + μ``, the factorized ĥ2 is
rounded about its medians; training uses additive noise for the rates and
straight-through rounding for the values the decoders read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor, nn

from bench.methods.human_machine.sicmh import COARSE, Architecture

#: y is at 1/16 of the image, h1 at 1/32, h2 at 1/64: image sides must be multiples of 64
STRIDE = 64


# --- layer structures (Figs. 5, 6, 9) ------------------------------------------------


def analysis_transform(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Fig. 5a (Encoder, Encoder_r): four stride-2 5×5 convolutions with GDN between them (1/16)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 5, 2, 2),
        GDN(width),
        nn.Conv2d(width, width, 5, 2, 2),
        GDN(width),
        nn.Conv2d(width, width, 5, 2, 2),
        GDN(width),
        nn.Conv2d(width, out_channels, 5, 2, 2),
    )


def synthesis_transform(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Fig. 6c (Decoder, Decoder_r, Decoder_side2/4): four stride-2 5×5 transposed convolutions, IGDN (×16)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, width, 5, 2, 2, output_padding=1),
        GDN(width, inverse=True),
        nn.ConvTranspose2d(width, width, 5, 2, 2, output_padding=1),
        GDN(width, inverse=True),
        nn.ConvTranspose2d(width, width, 5, 2, 2, output_padding=1),
        GDN(width, inverse=True),
        nn.ConvTranspose2d(width, out_channels, 5, 2, 2, output_padding=1),
    )


def hyper_analysis(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Figs. 5b/5c (Encoder_h1, Encoder_h2): 3×3 conv, Space2Depth, three 1×1 convs with ReLU (1/2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1),
        nn.PixelUnshuffle(2),
        nn.Conv2d(4 * width, width, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, out_channels, 1),
    )


def hyper_synthesis(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Figs. 6a/6b (Decoder_h2, Decoder_h1, Decoder_side1/3, ...): 1×1 tconvs with ReLU, Depth2Space, 3×3 (×2)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, width, 1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(width, width, 1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(width, 4 * width, 1),
        nn.ReLU(inplace=True),
        nn.PixelShuffle(2),
        nn.ConvTranspose2d(width, out_channels, 3, 1, 1),
    )


class PredictionModel(nn.Module):
    """Fig. 9: each position's parameters from the 5×5 neighbourhood of the hyper-decoded features.

    Unfold(5) makes one 5×5 patch per position; three 3×3 convolutions (the
    second with stride 2) and a linear layer map it to ``out_channels``
    values at that position. The output has the input's spatial size.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.unfold = nn.Unfold(5, padding=2)
        self.patch = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.LeakyReLU(0.2),
        )
        self.fc = nn.Linear(width * 9, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        patches = self.unfold(x).transpose(1, 2).reshape(b * h * w, c, 5, 5)
        out = self.fc(self.patch(patches).flatten(1))
        return out.reshape(b, h, w, self.out_channels).permute(0, 3, 1, 2).contiguous()


# --- the four parts -------------------------------------------------------------------


class ChannelContextModel(nn.Module):
    """CAHCM (§3.1.2): ĥ1 coded in channel groups, group k's (σ, μ) from h2p and groups 0..k−1.

    The channel-conditional context of Minnen & Singh (ICIP 2020): a context
    transform reads the groups decoded so far, and a 1×1 parameter network
    maps [context, h2p] to the group's Gaussian parameters. One Gaussian
    conditional codes every group, each into its own string.
    """

    def __init__(self, channels: int, groups: int, side_channels: int):
        super().__init__()
        size = channels // groups
        self.groups = [size] * groups
        self.context = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(k * size, channels, 3, 1, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, 1, 1),
            )
            for k in range(1, groups)
        )
        self.entropy_parameters = nn.ModuleList(
            self._parameter_network(side_channels + (channels if k else 0), 2 * size) for k in range(groups)
        )
        self.conditional = GaussianConditional(None)

    @staticmethod
    def _parameter_network(in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, in_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def group_parameters(self, k: int, side: Tensor, decoded: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(σ, μ) of group ``k`` from h2p and the groups decoded before it."""
        inputs = side if k == 0 else torch.cat([self.context[k - 1](torch.cat(list(decoded[:k]), 1)), side], 1)
        scales, means = self.entropy_parameters[k](inputs).chunk(2, 1)
        return scales, means

    def forward(self, h1: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
        """ĥ1 (straight-through rounding about μ) and its likelihoods."""
        decoded: list[Tensor] = []
        likelihoods = []
        for k, part in enumerate(h1.split(self.groups, 1)):
            scales, means = self.group_parameters(k, side, decoded)
            _, lik = self.conditional(part, scales, means=means)
            likelihoods.append(lik)
            decoded.append(quantize_ste(part - means) + means)
        return torch.cat(decoded, 1), torch.cat(likelihoods, 1)

    def compress(self, h1: Tensor, side: Tensor) -> tuple[list[list[bytes]], Tensor]:
        """One list of per-image strings per group, and ĥ1 as the decoder will see it."""
        decoded: list[Tensor] = []
        strings = []
        for k, part in enumerate(h1.split(self.groups, 1)):
            scales, means = self.group_parameters(k, side, decoded)
            indexes = self.conditional.build_indexes(scales)
            strings.append(self.conditional.compress(part, indexes, means=means))
            decoded.append(self.conditional.decompress(strings[-1], indexes, means=means))
        return strings, torch.cat(decoded, 1)

    def decompress(self, strings: Sequence[list[bytes]], side: Tensor) -> Tensor:
        if len(strings) != len(self.groups):
            raise ValueError(f"ĥ1 has {len(self.groups)} channel groups, got strings for {len(strings)}")
        decoded: list[Tensor] = []
        for k, group_strings in enumerate(strings):
            scales, means = self.group_parameters(k, side, decoded)
            indexes = self.conditional.build_indexes(scales)
            decoded.append(self.conditional.decompress(list(group_strings), indexes, means=means))
        return torch.cat(decoded, 1)


class SideInformation(nn.Module):
    """Part A: x → y → h1 → h2, and the entropy models of ĥ2 (factorized) and ĥ1 (CAHCM)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        n, m, c1, c2 = arch.width, arch.latent_channels, arch.h1_channels, arch.h2_channels
        self.encoder = analysis_transform(3, n, m)
        self.encoder_h1 = hyper_analysis(m, n, c1)
        self.encoder_h2 = hyper_analysis(c1, n, c2)
        self.h2_bottleneck = EntropyBottleneck(c2)
        self.decoder_h2 = hyper_synthesis(c2, n, c1)
        #: h2p: the Prediction Model's output, the side parameters of every CAHCM group
        self.prediction_h1 = PredictionModel(c1, arch.prediction_width, 2 * c1)
        self.h1_context = ChannelContextModel(c1, arch.h1_groups, 2 * c1)

    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Eqs. 1–3: the unquantized h1 and h2."""
        h1 = self.encoder_h1(self.encoder(x))
        return h1, self.encoder_h2(h1)

    def h2p(self, h2_hat: Tensor) -> Tensor:
        return self.prediction_h1(self.decoder_h2(h2_hat))

    def forward(self, x: Tensor) -> dict[str, Any]:
        """ĥ1, ĥ2 (rounded, straight-through) and their likelihoods (noisy in training, exact in eval)."""
        h1, h2 = self.analyse(x)
        _, h2_likelihoods = self.h2_bottleneck(h2)
        medians = self.h2_bottleneck._get_medians().detach()
        h2_hat = quantize_ste(h2 - medians) + medians
        h1_hat, h1_likelihoods = self.h1_context(h1, self.h2p(h2_hat))
        return {"h1_hat": h1_hat, "h2_hat": h2_hat, "likelihoods": {"h1": h1_likelihoods, "h2": h2_likelihoods}}

    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code ĥ2 then ĥ1 group by group; the strings and the decoded ĥ1, ĥ2 (what the decoder gets)."""
        h1, h2 = self.analyse(x)
        h2_strings = self.h2_bottleneck.compress(h2)
        h2_hat = self.h2_bottleneck.decompress(h2_strings, h2.shape[-2:])
        h1_strings, h1_hat = self.h1_context.compress(h1, self.h2p(h2_hat))
        return {"h2": h2_strings, "h1": h1_strings, "h1_hat": h1_hat, "h2_hat": h2_hat}

    def decompress(
        self, h2_strings: list[bytes], h1_strings: Sequence[list[bytes]], h2_shape: Sequence[int]
    ) -> tuple[Tensor, Tensor]:
        """ĥ1, ĥ2 from their strings; ``h2_shape`` is ĥ2's (height, width)."""
        h2_hat = self.h2_bottleneck.decompress(h2_strings, tuple(int(s) for s in h2_shape))
        return self.h1_context.decompress(h1_strings, self.h2p(h2_hat)), h2_hat


class MultiScaleFusion(nn.Module):
    """Part B: the multi-scale feature fusion block of Fig. 19c, Eqs. 4–11 (three fusion steps)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        n, m, c1, c2 = arch.width, arch.latent_channels, arch.h1_channels, arch.h2_channels
        self.decoder_h2side = hyper_synthesis(c2, n, c1)  # ĥ2 (1/64) → ĥ2' (1/32)
        self.decoder_side3 = hyper_synthesis(c1, n, m)  # ĥ2' → ĥ2'' (1/16)
        self.decoder_side1 = hyper_synthesis(c1, n, m)  # h̃ → h' (1/16)
        self.decoder_side2 = synthesis_transform(m, n, 3)  # h̃' → ĥ'' (1/1)
        self.decoder_side4 = synthesis_transform(m, n, 3)  # ĥ2'' → ĥ2''' (1/1)

    def forward(self, h1_hat: Tensor, h2_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(h̃', h̃''): the 1/16 fused features (the coarse Decoder reads them) and the image-sized output."""
        h2_1 = self.decoder_h2side(h2_hat)  # Eq. 4
        fused_1 = h1_hat + h2_1  # Eq. 5: h̃
        h2_2 = self.decoder_side3(h2_1)  # Eq. 6
        fused_2 = h2_2 + self.decoder_side1(fused_1)  # Eqs. 7-8: h̃'
        out = self.decoder_side4(h2_2) + self.decoder_side2(fused_2)  # Eqs. 9-11: h̃''
        return fused_2, out


class FuseConcat(nn.Module):
    """Fig. 10: h_sum, h̃1 and h̃2 brought to one scale and concatenated, then convolved to three channels."""

    def __init__(self, arch: Architecture):
        super().__init__()
        m, c1, f = arch.latent_channels, arch.h1_channels, arch.fuse_channels
        self.up_h2 = nn.ConvTranspose2d(c1, m, 5, 2, 2, output_padding=1)  # h̃2 (1/32) → 1/16
        self.merge = nn.Sequential(nn.Conv2d(2 * m, m, 3, 1, 1), nn.ReLU(inplace=True))
        ups: list[nn.Module] = []
        channels = m
        for _ in range(4):  # 1/16 → 1/1
            ups += [nn.ConvTranspose2d(channels, f, 5, 2, 2, output_padding=1), nn.ReLU(inplace=True)]
            channels = f
        self.up = nn.Sequential(*ups)
        self.out = nn.Sequential(nn.Conv2d(2 * f, f, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(f, 3, 3, 1, 1))

    def forward(self, h_sum: Tensor, h1_tilde: Tensor, h2_tilde: Tensor) -> Tensor:
        side = self.up(self.merge(torch.cat([self.up_h2(h2_tilde), h1_tilde], 1)))
        return self.out(torch.cat([h_sum, side], 1))


class CoarseDecoder(nn.Module):
    """Part C: Decoder, Decoder_h1, Decoder_h2c and FuseConcat (Eqs. 15–18) → h'_sum."""

    def __init__(self, arch: Architecture):
        super().__init__()
        n, m, c1, c2 = arch.width, arch.latent_channels, arch.h1_channels, arch.h2_channels
        self.decoder = synthesis_transform(m, n, arch.fuse_channels)  # h̃' → h_sum (1/1)
        self.decoder_h1 = hyper_synthesis(c1, n, m)  # ĥ1 → h̃1 (1/16)
        self.decoder_h2c = hyper_synthesis(c2, n, c1)  # ĥ2 → h̃2 (1/32)
        self.fuse_concat = FuseConcat(arch)

    def forward(self, fused: Tensor, h1_hat: Tensor, h2_hat: Tensor) -> Tensor:
        return self.fuse_concat(self.decoder(fused), self.decoder_h1(h1_hat), self.decoder_h2c(h2_hat))


class Enhancement(nn.Module):
    """Part D: the residue x − x̂_c coded as ŷ_r with (μ, σ) from ĥ1 (Decoder_h1r + Prediction Model)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        n, m, c1 = arch.width, arch.latent_channels, arch.h1_channels
        self.encoder_r = analysis_transform(3, n, m)
        self.decoder_h1r = hyper_synthesis(c1, n, m)  # ĥ1 (1/32) → 1/16
        self.prediction_yr = PredictionModel(m, arch.prediction_width, 2 * m)
        self.yr_conditional = GaussianConditional(None)
        self.decoder_r = synthesis_transform(m, n, 3)

    def parameters_of_yr(self, h1_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(σ, μ) of ŷ_r."""
        scales, means = self.prediction_yr(self.decoder_h1r(h1_hat)).chunk(2, 1)
        return scales, means

    def forward(self, residue: Tensor, h1_hat: Tensor) -> dict[str, Tensor]:
        y_r = self.encoder_r(residue)
        scales, means = self.parameters_of_yr(h1_hat)
        _, likelihoods = self.yr_conditional(y_r, scales, means=means)
        y_r_hat = quantize_ste(y_r - means) + means
        return {"x_r_hat": self.decoder_r(y_r_hat), "likelihoods": likelihoods}

    def compress(self, residue: Tensor, h1_hat: Tensor) -> dict[str, Any]:
        y_r = self.encoder_r(residue)
        scales, means = self.parameters_of_yr(h1_hat)
        indexes = self.yr_conditional.build_indexes(scales)
        strings = self.yr_conditional.compress(y_r, indexes, means=means)
        y_r_hat = self.yr_conditional.decompress(strings, indexes, means=means)
        return {"strings": strings, "x_r_hat": self.decoder_r(y_r_hat)}

    def decompress(self, strings: list[bytes], h1_hat: Tensor) -> Tensor:
        scales, means = self.parameters_of_yr(h1_hat)
        indexes = self.yr_conditional.build_indexes(scales)
        return self.decoder_r(self.yr_conditional.decompress(strings, indexes, means=means))


# --- the whole network ------------------------------------------------------------------


@dataclass
class SICMHOutput:
    """What one pass produced; only the parts asked for are filled in."""

    h1_hat: Tensor
    h2_hat: Tensor
    likelihoods: dict[str, Tensor]
    machine: dict[str, Tensor] = field(default_factory=dict)
    x_coarse: Tensor | None = None
    x_fine: Tensor | None = None

    def bits(self, names: Iterable[str] | None = None) -> Tensor:
        """Estimated bits (−log2 likelihoods) of the named latents (``h1``, ``h2``, ``yr``), all by default."""
        names = list(self.likelihoods) if names is None else list(names)
        return sum(torch.log(self.likelihoods[n]).sum() for n in names) / -math.log(2)


class SICMHNetwork(CompressionModel):
    """The four parts of Fig. 23: ``side`` (A), ``fusion`` (B, one per head), ``coarse`` (C), ``enhancement`` (D)."""

    def __init__(self, arch: Architecture | None = None):
        super().__init__()
        self.arch = arch or Architecture()
        self.side = SideInformation(self.arch)
        self.fusion = nn.ModuleDict({name: MultiScaleFusion(self.arch) for name in (*self.arch.heads, COARSE)})
        self.coarse = CoarseDecoder(self.arch)
        self.enhancement = Enhancement(self.arch)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % STRIDE or x.shape[-1] % STRIDE:
            raise ValueError(f"SICMH takes N x 3 x H x W images with H, W multiples of {STRIDE}; got {tuple(x.shape)}")

    def machine_input(self, head: str, h1_hat: Tensor, h2_hat: Tensor) -> Tensor:
        """h̃'' of ``head``: what that task's network reads (image-sized, three channels)."""
        if head not in self.fusion or head == COARSE:
            raise KeyError(f"SICMH has no task head {head!r}; it has {list(self.arch.heads)}")
        return self.fusion[head](h1_hat, h2_hat)[1]

    def coarse_reconstruction(self, h1_hat: Tensor, h2_hat: Tensor) -> Tensor:
        """x̂_c = h̃'' + h'_sum (Eq. 19), from the base layer alone."""
        fused, out = self.fusion[COARSE](h1_hat, h2_hat)
        return out + self.coarse(fused, h1_hat, h2_hat)

    def forward(self, x: Tensor, heads: Sequence[str] = (), coarse: bool = False, fine: bool = False) -> SICMHOutput:
        """One pass that computes only what is asked: task inputs of ``heads``, x̂_c, x̂_f (implies x̂_c).

        In eval mode every latent is rounded exactly as :meth:`compress` rounds it.
        """
        self._check_input(x)
        side = self.side(x)
        out = SICMHOutput(side["h1_hat"], side["h2_hat"], dict(side["likelihoods"]))
        for head in heads:
            out.machine[head] = self.machine_input(head, out.h1_hat, out.h2_hat)
        if coarse or fine:
            out.x_coarse = self.coarse_reconstruction(out.h1_hat, out.h2_hat)
        if fine:
            enh = self.enhancement(x - out.x_coarse, out.h1_hat)
            out.likelihoods["yr"] = enh["likelihoods"]
            out.x_fine = out.x_coarse + enh["x_r_hat"]
        return out

    # --- real entropy coding (call ``update()`` first) ---------------------------------
    def compress(self, x: Tensor) -> dict[str, Any]:
        """Both layers' strings: ``h2`` (list), ``h1`` (a list per group), ``yr`` (list); and ĥ2's shape."""
        self._check_input(x)
        base = self.side.compress(x)
        x_coarse = self.coarse_reconstruction(base["h1_hat"], base["h2_hat"])
        enh = self.enhancement.compress(x - x_coarse, base["h1_hat"])
        return {
            "h2": base["h2"],
            "h1": base["h1"],
            "yr": enh["strings"],
            "h2_shape": tuple(base["h2_hat"].shape[-2:]),
        }

    def decompress_base(
        self, h2_strings: list[bytes], h1_strings: list[list[bytes]], h2_shape: Sequence[int]
    ) -> tuple[Tensor, Tensor]:
        """ĥ1, ĥ2 from the base layer's strings."""
        return self.side.decompress(h2_strings, h1_strings, h2_shape)

    def decompress_fine(self, yr_strings: list[bytes], h1_hat: Tensor, h2_hat: Tensor) -> Tensor:
        """x̂_f = x̂_c + Decoder_r(ŷ_r), from the base layer's ĥ1, ĥ2 and the enhancement strings."""
        return self.coarse_reconstruction(h1_hat, h2_hat) + self.enhancement.decompress(yr_strings, h1_hat)
