"""JPEG AI's seven quality metrics against independent implementations, on real photographs JPEG-coded by Pillow.

The metrics and IQA_pytorch come with ``pip install -e '.[quality]'``; plenoptic (NLPD) and vmaf-torch (VMAF), the
independent implementations some checks compare with, come with the ``test`` extra. Each check skips, naming what
to install, only when a package it needs is absent.
"""

from __future__ import annotations

import io
import math
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.metrics import jpeg_ai as qs


def need(module: str, extra: str = "quality") -> object:
    return pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[{extra}]'")


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(reference, JPEG-decoded) pairs: a square photograph and one of odd width, at a low and a middle quality."""
    import skimage.data

    photos = {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea()}  # 512 x 512, 300 x 451
    return {f"{name}-q{q}": (ref, jpeg(ref, q)) for name, ref in photos.items() for q in (10, 50)}


@pytest.fixture(scope="module")
def planes(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[qs.JpegAiPlanes, qs.JpegAiPlanes]]:
    return {k: (qs.jpeg_ai_planes(r), qs.jpeg_ai_planes(d)) for k, (r, d) in pairs.items()}


@pytest.fixture()
def torch_one_thread():
    torch = need("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def tensor(plane: np.ndarray):
    import torch

    arr = torch.from_numpy(np.ascontiguousarray(plane))
    return arr[None, None] if arr.ndim == 2 else arr.permute(2, 0, 1)[None]


# ---------------------------------------------------------------------------------------------------------------
# colour conventions


def test_planes_equal_ffmpeg_bt709_full_range_within_one_code(pairs):
    """swscale's BT.709 full-range conversion to 10 bit agrees to one code value; BT.601 or limited range would not."""
    av = need("av")
    rgb = pairs["astronaut-q10"][0]
    ours = np.round(qs.jpeg_ai_planes(rgb).ycbcr * 1023).astype(np.int64)

    def swscale(colorspace: str, color_range: str) -> np.ndarray:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv444p10le", dst_colorspace=colorspace, dst_color_range=color_range, interpolation="POINT"
        )
        return np.stack(
            [np.frombuffer(p, dtype="<u2").reshape(p.height, p.line_size // 2)[:, : p.width] for p in frame.planes]
        ).astype(np.int64)

    assert np.abs(swscale("ITU709", "JPEG") - ours).max() <= 1
    assert np.abs(swscale("ITU601", "JPEG") - ours).max() > 10
    assert np.abs(swscale("ITU709", "MPEG") - ours).max() > 10


def test_planes_of_primaries():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    p = qs.jpeg_ai_planes(rgb)
    codes = np.round(p.ycbcr * 1023).astype(int)[:, 0]
    assert codes[0].tolist() == [1023, 0, round(0.2126 * 1023), round(0.0722 * 1023)]  # Y
    assert codes[1, 3] == 1023 and codes[2, 2] == 1023  # Cb of blue, Cr of red saturate
    assert codes[1, 0] == codes[2, 0] == 512  # grey: chroma at mid-scale (511.5 rounds to even)
    assert p.rgb.dtype == np.float32 and np.allclose(p.rgb * 1023, np.round(p.rgb * 1023), atol=1e-3)


def test_psnr_y_equals_skimage_on_the_10_bit_luma(planes, pairs):
    from skimage.metrics import peak_signal_noise_ratio

    for key, (ref, dec) in planes.items():
        expected = peak_signal_noise_ratio(ref.y.astype(np.float64), dec.y.astype(np.float64), data_range=1.0)
        assert qs.psnr_y(*pairs[key]) == pytest.approx(expected, abs=1e-9)
    reference = pairs["astronaut-q10"][0]
    assert qs.psnr_y(reference, reference) == math.inf


def test_rejects_bad_input():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        qs.jpeg_ai_planes(img.astype(np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        qs.vif(img, np.zeros((8, 9, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# each metric against an independent implementation


def test_ms_ssim_equals_the_harness_opencv_implementation(planes, torch_one_thread):
    """pytorch_msssim on Y (10-bit codes) equals bench.metrics.image.MSSSIM (itself equal to pytorch_msssim on RGB)."""
    need("pytorch_msssim")
    from bench.metrics.image import MSSSIM

    for ref, dec in planes.values():
        ours = qs._ms_ssim(ref, dec)
        three = [np.repeat((p.y * np.float32(1023))[..., None], 3, axis=2) for p in (ref, dec)]
        assert ours == pytest.approx(MSSSIM(three[0], data_range=1023.0)(three[1]), abs=1e-5)
    assert qs._ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)


def test_vif_equals_jpeg_ai_implementation(planes, torch_one_thread):
    """piq's VIFp equals IQA_pytorch's VIFs, the code JPEG AI's framework runs, argument order included."""
    need("piq")
    iqa = need("IQA_pytorch")
    reference_vif = iqa.VIFs(channels=1)
    for ref, dec in planes.values():
        expected = float(reference_vif(tensor(dec.y), tensor(ref.y), as_loss=False))
        assert qs._vif(ref, dec) == pytest.approx(expected, abs=2e-5)
        assert abs(qs._vif(dec, ref) - expected) > 1e-3  # VIF is not symmetric: the order is checked
    assert qs._vif(ref, ref) == pytest.approx(1.0, abs=1e-6)


@pytest.fixture()
def legacy_torch_fft(monkeypatch, torch_one_thread):
    """IQA_pytorch 0.1 calls torch.rfft/torch.ifft (gone since torch 1.8); JPEG AI's copy of it uses torch.fft alike."""
    torch = torch_one_thread
    monkeypatch.setattr(
        torch, "rfft", lambda x, _d, onesided=False: torch.view_as_real(torch.fft.fft2(x)), raising=False
    )
    monkeypatch.setattr(
        torch,
        "ifft",
        lambda x, _d: torch.view_as_real(torch.fft.ifft2(torch.view_as_complex(x.contiguous()))),
        raising=False,
    )
    return torch


def test_fsim_equals_jpeg_ai_implementation(planes, legacy_torch_fft):
    """piq's FSIMc equals IQA_pytorch's FSIM on RGB, the code JPEG AI's framework runs."""
    need("piq")
    iqa = need("IQA_pytorch")
    reference_fsim = iqa.FSIM(channels=3)
    for ref, dec in planes.values():
        expected = float(reference_fsim(tensor(dec.rgb), tensor(ref.rgb), as_loss=False))
        assert qs._fsim(ref, dec) == pytest.approx(expected, abs=2e-5)
    assert qs._fsim(ref, ref) == pytest.approx(1.0, abs=1e-6)


def test_nlpd_agrees_with_plenoptic(planes, torch_one_thread):
    """JPEG AI's NLPD (IQA_pytorch) and plenoptic's, by the metric's authors' lab, agree within 5 % and in order.

    They differ at the borders (reflection padding and bilinear upsampling against the original's symmetric padding
    and zero insertion), by 1-4 % on these images; JPEG AI's values are the IQA_pytorch ones.
    """
    need("IQA_pytorch")
    plenoptic = need("plenoptic", extra="test")
    ours, theirs = [], []
    for ref, dec in planes.values():
        ours.append(qs._nlpd(ref, dec))
        theirs.append(float(plenoptic.metric.nlpd(tensor(ref.y).double(), tensor(dec.y).double())))
    assert np.allclose(ours, theirs, rtol=0.05)
    assert np.argsort(ours).tolist() == np.argsort(theirs).tolist()
    assert qs._nlpd(ref, ref) == 0.0


def test_iw_ssim_identity_and_order(planes, torch_one_thread):
    """IW-SSIM is 1 for identical images and falls with the JPEG quality.

    No maintained independent IW-SSIM is on PyPI. piq's matches the authors' MATLAB values in piq's own tests, and
    matched the Python IW-SSIM that JPEG AI's framework ships to 1e-5 on these images when this module was written.
    """
    need("piq")
    for name in ("astronaut", "chelsea"):
        low, mid = (qs._iw_ssim(*planes[f"{name}-q{q}"]) for q in (10, 50))
        assert 0.5 < low < mid < 1.0
    ref = planes["astronaut-q10"][0]
    assert qs._iw_ssim(ref, ref) == pytest.approx(1.0, abs=1e-9)


def test_psnr_hvs_backends_agree(planes):
    """psnr-hvsm's C++ and NumPy implementations (each checked against the authors' Octave code) agree, odd sizes."""
    psnr_hvsm = need("psnr_hvsm")
    if "cpp" not in psnr_hvsm.BACKENDS:
        pytest.skip("this psnr-hvsm wheel has no C++ back-end")
    numpy_impl = psnr_hvsm.BACKENDS["numpy"]["psnr_hvs_hvsm"]
    for ref, dec in planes.values():
        hvs, hvsm = qs._psnr_hvs_pair(ref, dec)
        h, w = ref.y.shape
        a, b = (np.pad(p.y, ((0, -h % 8), (0, -w % 8)), mode="edge").astype(np.float64) for p in (ref, dec))
        with np.errstate(invalid="ignore", divide="ignore"):  # it evaluates both branches of a where()
            expected = [float(v) for v in numpy_impl(a, b)]
        assert [hvs, hvsm] == pytest.approx(expected, abs=1e-9)
        assert 15 < hvs < hvsm < 60
    assert qs._psnr_hvs(ref, ref) == 100.0


def test_vmaf_agrees_with_vmaf_torch(planes, torch_one_thread):
    """libvmaf (FFmpeg from imageio-ffmpeg) and vmaf-torch, a PyTorch port of it, agree within 0.05 VMAF points."""
    try:
        qs.ffmpeg_with_libvmaf()
    except qs.VmafUnavailableError as exc:
        pytest.skip(str(exc))
    vmaf_torch = need("vmaf_torch", extra="test")
    torch = torch_one_thread
    model = vmaf_torch.VMAF(temporal_pooling=True, enable_motion=False, clip_score=False).double()
    cases = list(planes.values())
    cases.append((cases[0][0], cases[0][0]))
    for ref, dec in cases:
        ours = qs._vmaf(ref, dec)
        with torch.no_grad():  # vmaf-torch takes luma on the 8-bit scale
            port = float(model(tensor(ref.y * 1023 / 4).double(), tensor(dec.y * 1023 / 4).double()))
        assert ours == pytest.approx(port, abs=0.05)
    assert 97.0 < ours < 98.0  # identical single frames: vmaf_v0.6.1 without motion stays below 100


# ---------------------------------------------------------------------------------------------------------------
# public functions, table, missing packages


def test_suite_matches_the_per_metric_functions(pairs):
    for module in ("torch", "piq", "psnr_hvsm"):
        need(module)
    ref, dec = pairs["chelsea-q10"]
    keys = ["vif-y", "fsim-rgb", "psnr-hvs-y"]
    got = qs.jpeg_ai_suite(ref, dec, keys)
    assert list(got) == keys
    for key in keys:
        assert got[key] == qs.METRICS_BY_KEY[key].function(ref, dec)
    assert qs.psnr_hvs_m(ref, dec) > qs.psnr_hvs(ref, dec)


def test_each_metric_improves_with_jpeg_quality(pairs):
    """Direction and argument order hold end to end: the decoded image nearer the original scores better."""
    for module in ("torch", "pytorch_msssim", "piq", "IQA_pytorch", "psnr_hvsm"):
        need(module)
    try:
        qs.ffmpeg_with_libvmaf()
        keys = None
    except qs.VmafUnavailableError:
        keys = [m.key for m in qs.JPEG_AI_METRICS if m.key != "vmaf-y"]
    ref, low = pairs["astronaut-q10"]
    mid = pairs["astronaut-q50"][1]
    worse, better = qs.jpeg_ai_suite(ref, low, keys), qs.jpeg_ai_suite(ref, mid, keys)
    for key in worse:
        m = qs.METRICS_BY_KEY[key]
        assert (better[key] > worse[key]) == m.higher_is_better, key
        assert m.to_bd([better[key]])[0] > m.to_bd([worse[key]])[0], key


def test_table_of_the_seven():
    assert [m.name for m in qs.JPEG_AI_METRICS] == ["MS-SSIM", "VIF", "FSIM", "NLPD", "IW-SSIM", "VMAF", "PSNR-HVS"]
    assert len(qs.METRICS_BY_KEY) == 7
    assert [m.key for m in qs.JPEG_AI_METRICS if not m.higher_is_better] == ["nlpd-y"]
    assert {m.bd_transform for m in qs.JPEG_AI_METRICS if m.key != "nlpd-y"} == {"none"}
    assert qs.METRICS_BY_KEY["nlpd-y"].to_bd([0.25, 0.1]).tolist() == [0.75, 0.9]
    assert qs.METRICS_BY_KEY["psnr-hvs-y"].unit == "dB"


def test_mean_bd_rate_of_the_seven():
    rates = {m.key: float(i) for i, m in enumerate(qs.JPEG_AI_METRICS, start=-10)}  # -10 ... -4
    head = qs.jpeg_ai_mean_bd_rate({**rates, "psnr-y": 99.0})  # other keys are ignored
    assert head.computed and head.value == pytest.approx(-7.0) and head.missing == ()
    assert str(head) == "-7.00 (mean of 7 metrics)"


@pytest.mark.parametrize("gap", [None, math.nan, "absent"])
def test_mean_bd_rate_is_not_computed_with_a_metric_missing(gap):
    rates: dict[str, float | None] = {m.key: -10.0 for m in qs.JPEG_AI_METRICS}
    if gap == "absent":
        del rates["vmaf-y"]
    else:
        rates["vmaf-y"] = gap
    head = qs.jpeg_ai_mean_bd_rate(rates)
    assert head.value is None and not head.computed
    assert head.missing == ("vmaf-y",) and len(head.per_metric) == 6
    assert str(head) == "not computed: no BD-rate for vmaf-y"


def test_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "piq", None)  # makes `import piq` fail
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(qs.MissingPackageError, match=r"VIF needs the piq package: pip install 'hmc-bench\[quality\]'"):
        qs.vif(img, img)


def test_vmaf_without_libvmaf_says_how_to_get_it(monkeypatch, tmp_path: Path):
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\necho ' TS psnr              VV->V      Calculate the PSNR between two video streams.'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    need("imageio_ffmpeg")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    qs.ffmpeg_with_libvmaf.cache_clear()
    try:
        img = np.zeros((64, 64, 3), np.uint8)
        with pytest.raises(qs.VmafUnavailableError, match="has no libvmaf filter") as err:
            qs.vmaf(img, img)
        assert "imageio-ffmpeg" in str(err.value) and "IMAGEIO_FFMPEG_EXE" in str(err.value)
        monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "missing"))
        qs.ffmpeg_with_libvmaf.cache_clear()
        with pytest.raises(qs.VmafUnavailableError, match="could not run"):
            qs.vmaf(img, img)
    finally:
        qs.ffmpeg_with_libvmaf.cache_clear()
