"""The human metrics the runner can measure, declared: PSNR and MS-SSIM (CompressAI's), PSNR-YUV 4:2:0 for clips,
and JPEG AI's objective suite (``metrics=[...]`` in a run's config picks them; PSNR and MS-SSIM by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.metrics import image as I
from bench.metrics import jpeg_ai as J
from bench.metrics import video as V
from bench.metrics.registry import CLIP, IMAGE, Metric, register


def pairwise(fn: Callable[[Any, Any], float]) -> Callable[[Any], Callable[[Any], float]]:
    """A scorer factory from a ``fn(reference, decoded)`` function."""
    return lambda original: lambda decoded: fn(original, decoded)


PSNR_RGB = register(
    Metric(
        "psnr-rgb",
        "dB",
        True,
        media=(IMAGE, CLIP),
        scorers={IMAGE: lambda original: lambda decoded: I.psnr(decoded, original), CLIP: pairwise(V.psnr_rgb)},
        human=True,
        description="PSNR from the exact MSE of the 8-bit RGB planes (a clip: over all its frames)",
    )
)
MS_SSIM_RGB = register(
    Metric(
        "ms-ssim-rgb",
        "",
        True,
        media=(IMAGE, CLIP),
        bd="ssim",
        high=1.0,
        high_inclusive=False,
        scorers={IMAGE: I.MSSSIM, CLIP: V.ClipMSSSIM},
        human=True,
        description="MS-SSIM on RGB as pytorch_msssim computes it (CompressAI's); a clip: the mean over frames",
    )
)
PSNR_YUV420 = register(
    Metric(
        "psnr-yuv420",
        "dB",
        True,
        media=(CLIP,),
        scorers={CLIP: V.PSNRYUV420},
        human=True,
        description="(6 PSNR_Y + PSNR_U + PSNR_V) / 8 on BT.601 4:2:0, as the video coding field weights it",
    )
)
PSNR_Y = register(
    Metric(
        "psnr-y",
        "dB",
        True,
        media=(IMAGE, CLIP),
        scorers={IMAGE: pairwise(J.psnr_y)},
        human=True,
        description="PSNR of luma: an image's on JPEG AI's 10-bit BT.709 Y (bench.metrics.jpeg_ai); clips: published",
    )
)
MS_SSIM_DB_RGB = register(
    Metric("ms-ssim-db-rgb", "dB", True, human=True, description="MS-SSIM as -10 log10(1 - MS-SSIM) (published files)")
)

for _m in J.JPEG_AI_METRICS:
    register(
        Metric(
            _m.key,
            _m.unit,
            _m.higher_is_better,
            media=(IMAGE,),
            scorers={IMAGE: pairwise(_m.function)},
            human=True,
            description=f"{_m.name} (JPEG AI's objective suite): {_m.planes}; {_m.package}",
        )
    )
