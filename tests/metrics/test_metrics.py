"""Human metrics against independent computations (pytorch_msssim, scikit-image, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from bench.metrics import image as M


def _noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def test_psnr_matches_scikit_image_and_float64_formula(photos):
    a = photos["astronaut"]
    b = _noisy(a, 7.0, 0)
    expected = peak_signal_noise_ratio(a, b, data_range=255)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert M.psnr(a, b) == pytest.approx(expected, rel=1e-12)
    assert M.mse(a, b) == pytest.approx(mse, rel=1e-12)
    assert M.psnr(a, a) == math.inf


@pytest.mark.parametrize("shape", [(512, 512), (301, 417), (161, 170), (1000, 163)])
@pytest.mark.parametrize("sigma", [3.0, 25.0])
def test_ms_ssim_matches_pytorch_msssim(photos, shape, sigma):
    torch = pytest.importorskip("torch")
    from pytorch_msssim import ms_ssim as reference

    src = np.concatenate([photos["astronaut"], photos["astronaut"][::-1]], axis=0)
    a = np.ascontiguousarray(src[: shape[0], : shape[1]])
    b = _noisy(a, sigma, 1)
    to_t = lambda x: torch.from_numpy(x.copy()).float().permute(2, 0, 1)[None]  # noqa: E731
    expected = reference(to_t(b), to_t(a), data_range=255).item()
    assert M.ms_ssim(b, a) == pytest.approx(expected, rel=1e-5)
    # one cached reference scores several reconstructions with the same values
    scorer = M.MSSSIM(a)
    assert scorer(b) == pytest.approx(M.ms_ssim(b, a), rel=1e-12)
    assert scorer(a) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_refuses_small_images_with_a_message():
    img = np.zeros((160, 400, 3), np.uint8)
    with pytest.raises(ValueError, match="shorter side exceeds 160"):
        M.ms_ssim(img, img)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        M.psnr(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11, 3), np.uint8))


def test_bits_per_pixel_and_db():
    assert M.bits_per_pixel(1000, 100, 80) == 1.0
    assert M.ms_ssim_db(0.99) == pytest.approx(20.0)
