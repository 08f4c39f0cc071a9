"""Conventional codecs: JPEG 2000, JPEG XL, AVIF, HEVC intra (real libraries) and VTM (fake binaries).

Every codec is built from its shipped Hydra config, so the configs are tested
too. Real images from scikit-image, small crops to stay fast.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from skimage import data

from bench.methods.base import Bitstream, CodecError, Family, MethodUnavailable
from bench.methods.codecs.heif import HevcIntra
from bench.methods.codecs.imagecodecs import Avif, Jpeg2000, JpegXL
from bench.methods.codecs.vtm import VTM, VTM_URL, rgb_to_ycbcr, ycbcr_to_rgb
from bench.metrics.image import psnr

# (config name, overrides) of the installed codecs
INSTALLED = [
    ("jpeg2000", {}),
    ("jpegxl", {}),
    ("avif", {}),
    ("avif", {"chroma": "420"}),
    ("hevc-intra", {}),
    ("hevc-intra", {"chroma": "420"}),
]
IDS = [name + "".join(f"-{v}" for v in over.values()) for name, over in INSTALLED]


def load_method(name: str, **overrides):
    cfg = OmegaConf.load(files("bench.conf") / "method" / f"{name}.yaml")
    return instantiate(cfg, **overrides)


@pytest.fixture(scope="module")
def astro_odd() -> np.ndarray:
    """An odd-sized 77 x 101 crop of the astronaut (face and suit)."""
    return np.ascontiguousarray(data.astronaut()[60:137, 190:291])


@pytest.fixture(scope="module")
def astro_small() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[40:136, 180:308])  # 96 x 128


@pytest.fixture(scope="module")
def gray_rgb() -> np.ndarray:
    """A grayscale photo turned RGB (three equal planes), odd-sized."""
    return np.ascontiguousarray(np.repeat(data.camera()[200:277, 200:301, None], 3, axis=2))


# --- the installed codecs -------------------------------------------------------


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
def test_config_builds_an_available_sbar_method(name, over):
    method = load_method(name, **over)
    assert method.family is Family.SBAR
    assert method.unavailable_reason() is None
    versions = method.versions()
    assert versions and all(isinstance(v, str) and v for v in versions.values())
    assert len(method.rates) >= 8


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
@pytest.mark.parametrize("image_name", ["astro_odd", "gray_rgb"])
def test_round_trip_keeps_size_and_counts_real_bytes(name, over, image_name, request):
    image = request.getfixturevalue(image_name)
    method = load_method(name, **over)
    h, w = image.shape[:2]
    rate = method.rates[len(method.rates) // 2]
    bitstream = method.encode(image, rate)
    assert list(bitstream.streams) == ["main"]
    data_bytes = bitstream.streams["main"]
    assert isinstance(data_bytes, bytes) and len(data_bytes) > 0
    assert (bitstream.height, bitstream.width) == (h, w)
    assert bitstream.bpp() == pytest.approx(len(data_bytes) * 8 / (h * w))
    out = method.decode(bitstream)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert psnr(image, out) > 27
    # decoding from the bytes alone (a fresh Bitstream) gives the same picture
    again = method.decode(Bitstream({"main": bytes(data_bytes)}, h, w))
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
def test_bytes_and_psnr_rise_along_the_default_rate_list(name, over, astro_small):
    method = load_method(name, **over)
    sizes, quality = [], []
    for rate in method.rates:
        bitstream = method.encode(astro_small, rate)
        sizes.append(bitstream.num_bytes())
        quality.append(psnr(astro_small, method.decode(bitstream)))
    assert all(a < b for a, b in zip(sizes[:-1], sizes[1:], strict=True)), sizes
    assert all(a < b for a, b in zip(quality[:-1], quality[1:], strict=True)), quality


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
def test_odd_sized_image_rate_subset_is_monotonic(name, over, astro_odd):
    method = load_method(name, **over)
    subset = [method.rates[0], method.rates[len(method.rates) // 2], method.rates[-1]]
    streams = [method.encode(astro_odd, r) for r in subset]
    bpps = [b.bpp() for b in streams]
    quality = [psnr(astro_odd, method.decode(b)) for b in streams]
    assert bpps == sorted(bpps) and len(set(bpps)) == 3, bpps
    assert quality == sorted(quality), quality


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
def test_encoding_is_deterministic(name, over, astro_odd):
    method = load_method(name, **over)
    rate = method.rates[2]
    assert method.encode(astro_odd, rate).streams == method.encode(astro_odd, rate).streams


@pytest.mark.parametrize(("name", "over"), INSTALLED, ids=IDS)
def test_corrupt_bytes_raise_codec_error(name, over):
    method = load_method(name, **over)
    with pytest.raises(CodecError):
        method.decode(Bitstream({"main": b"\x00not an image at all" * 4}, 16, 16))


def test_hevc_qp_is_what_sets_the_rate(astro_odd):
    """x265:qp really reaches x265: each QP gives other bytes, and libheif's quality no longer matters."""
    method = load_method("hevc-intra")
    sizes = {qp: method.encode(astro_odd, qp).num_bytes() for qp in (40, 30, 20)}
    assert sizes[40] < sizes[30] < sizes[20]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (Jpeg2000, {"rates": [0]}),
        (Jpeg2000, {"rates": [30], "chroma": "420"}),
        (JpegXL, {"rates": [101]}),
        (JpegXL, {"rates": [30], "rate_param": "distance"}),
        (Avif, {"rates": [100]}),
        (Avif, {"rates": [50], "chroma": "411"}),
        (HevcIntra, {"rates": [52]}),
        (HevcIntra, {"rates": [32], "x265_params": {"qp": 20}}),
        (VTM, {"rates": [64]}),
        (VTM, {"rates": [32], "bit_depth": 12}),
        (VTM, {"rates": [32], "matrix": "bt2020"}),
    ],
)
def test_bad_config_fails_at_construction(cls, kwargs):
    with pytest.raises(ValueError):
        cls(name="x", **kwargs)


def test_jpegxl_distance_mode(astro_odd):
    method = load_method("jpegxl", rate_param="distance", rates=[8.0, 4.0, 1.0])
    sizes = [method.encode(astro_odd, d).num_bytes() for d in method.rates]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


# --- VTM, with fake EncoderApp / DecoderApp ---------------------------------------------

# The fake encoder checks what the adapter wrote (sizes, options), quantises the YUV samples
# coarser as QP rises and zlib-compresses them, so bytes still fall with QP.
FAKE_ENCODER = """
import json, sys, zlib
import numpy as np

args = sys.argv[1:]
opts = {}
i = 0
while i < len(args):
    a = args[i]
    if a.startswith("--") and "=" in a:
        k, v = a[2:].split("=", 1)
        opts[k] = v
        i += 1
    else:
        opts[a.lstrip("-")] = args[i + 1]
        i += 2
print("VVCSoftware: VTM Encoder Version 0.0-fake [Linux][test]")
open(opts["c"]).close()
w, h, qp = int(opts["wdt"]), int(opts["hgt"]), int(opts["q"])
fmt, depth = opts["InputChromaFormat"], int(opts["InputBitDepth"])
assert opts["ChromaFormatIDC"] == fmt and opts["f"] == "1", opts
dtype = np.uint8 if depth == 8 else np.dtype("<u2")
cw, ch = (w // 2, h // 2) if fmt == "420" else (w, h)
x = np.fromfile(opts["i"], dtype=dtype)
if x.size != w * h + 2 * cw * ch:
    sys.exit(f"yuv has {x.size} samples, expected {w * h + 2 * cw * ch}")
step = 1 if qp == 0 else 2 ** (qp // 8 + depth - 8)
x = np.minimum((x // step) * step + step // 2, 2**depth - 1).astype(dtype)
head = json.dumps({"w": w, "h": h, "fmt": fmt}).encode()
with open(opts["b"], "wb") as f:
    f.write(len(head).to_bytes(2, "little") + head + zlib.compress(x.tobytes(), 9))
"""

FAKE_DECODER = """
import sys, zlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
print("VVCSoftware: VTM Decoder Version 0.0-fake")
raw = open(args["-b"], "rb").read()
n = int.from_bytes(raw[:2], "little")
with open(args["-o"], "wb") as f:
    f.write(zlib.decompress(raw[2 + n:]))
"""

HANGING = """
import time
print("VVCSoftware: VTM Encoder Version 0.0-fake")
time.sleep(600)
"""

FAILING = """
import sys
sys.stderr.write("some progress\\nERROR: boom, cannot parse the cfg\\n")
sys.exit(1)
"""

posix_only = pytest.mark.skipif(os.name != "posix", reason="fake binaries are shebang scripts")


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def vtm_dir(tmp_path: Path) -> Path:
    """A fake VTM clone laid out like a real build: bin/ and cfg/."""
    root = tmp_path / "VVCSoftware_VTM"
    write_script(root / "bin" / "EncoderAppStatic", FAKE_ENCODER)
    write_script(root / "bin" / "DecoderAppStatic", FAKE_DECODER)
    (root / "cfg").mkdir()
    (root / "cfg" / "encoder_intra_vtm.cfg").write_text("# fake all-intra cfg\n")
    return root


def test_vtm_unavailable_names_the_missing_binary_and_where_to_get_vtm(tmp_path, astro_odd):
    method = VTM(name="vtm", rates=[32], vtm_dir=str(tmp_path / "no-vtm-here"))
    reason = method.unavailable_reason()
    assert reason is not None
    assert "EncoderAppStatic" in reason and "no-vtm-here" in reason and VTM_URL in reason
    with pytest.raises(MethodUnavailable) as excinfo:
        method.encode(astro_odd, 32)
    assert str(excinfo.value) == reason
    with pytest.raises(MethodUnavailable):
        method.decode(Bitstream({"main": b"x"}, 77, 101))


@posix_only
def test_vtm_unavailable_when_only_the_cfg_is_missing(vtm_dir):
    (vtm_dir / "cfg" / "encoder_intra_vtm.cfg").unlink()
    reason = VTM(name="vtm", rates=[32], vtm_dir=str(vtm_dir)).unavailable_reason()
    assert reason is not None and "encoder_intra_vtm.cfg" in reason and VTM_URL in reason


@posix_only
def test_vtm_finds_the_cfg_in_the_clone_its_encoder_sits_in(vtm_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the clone
    method = VTM(
        name="vtm",
        rates=[32],
        encoder=str(vtm_dir / "bin" / "EncoderAppStatic"),
        decoder=str(vtm_dir / "bin" / "DecoderAppStatic"),
    )
    assert method.unavailable_reason() is None


@posix_only
def test_vtm_config_finds_a_vtm_clone_from_the_environment(vtm_dir, monkeypatch):
    monkeypatch.setenv("VTM_DIR", str(vtm_dir))
    method = load_method("vtm")
    assert isinstance(method, VTM) and method.family is Family.SBAR
    assert method.rates == [47, 42, 37, 32, 27, 22, 17, 12]
    assert method.unavailable_reason() is None


@posix_only
@pytest.mark.parametrize(
    ("chroma", "bit_depth", "matrix", "full_range", "min_psnr"),
    [
        ("444", 8, "bt709", True, 45),
        ("444", 10, "bt601", True, 55),
        ("444", 8, "bt601", False, 42),
        ("420", 8, "bt709", True, 38),
        ("420", 10, "bt709", False, 38),
    ],
)
def test_vtm_round_trip_through_fake_binaries(vtm_dir, astro_odd, chroma, bit_depth, matrix, full_range, min_psnr):
    method = VTM(
        name="vtm",
        rates=[0, 24, 47],
        vtm_dir=str(vtm_dir),
        chroma=chroma,
        bit_depth=bit_depth,
        matrix=matrix,
        full_range=full_range,
        timeout_s=60,
    )
    h, w = astro_odd.shape[:2]
    streams = [method.encode(astro_odd, qp) for qp in method.rates]
    for bitstream in streams:
        assert (bitstream.height, bitstream.width) == (h, w)
        assert bitstream.bpp() == pytest.approx(len(bitstream.streams["main"]) * 8 / (h * w))
    outs = [method.decode(b) for b in streams]
    assert all(o.shape == (h, w, 3) and o.dtype == np.uint8 for o in outs)
    sizes = [b.num_bytes() for b in streams]
    quality = [psnr(astro_odd, o) for o in outs]
    assert sizes[0] > sizes[1] > sizes[2], sizes  # rates are QPs: higher QP, fewer bytes
    assert quality[0] > quality[1] > quality[2], quality
    assert quality[0] > min_psnr  # QP 0 in the fake is lossless: only colour conversion / chroma loss
    assert method.versions() == {"vtm": "0.0-fake"}


@posix_only
def test_vtm_timeout_raises_codec_error_naming_the_binary(vtm_dir, astro_odd):
    hang = write_script(vtm_dir / "bin" / "HangingEncoder", HANGING)
    method = VTM(name="vtm", rates=[32], vtm_dir=str(vtm_dir), encoder=str(hang), timeout_s=1)
    with pytest.raises(CodecError) as excinfo:
        method.encode(astro_odd, 32)
    message = str(excinfo.value)
    assert str(hang) in message and "timed out" in message and "QP 32" in message


@posix_only
def test_vtm_nonzero_exit_raises_codec_error_with_stderr_tail(vtm_dir, astro_odd):
    failing = write_script(vtm_dir / "bin" / "FailingEncoder", FAILING)
    method = VTM(name="vtm", rates=[32], vtm_dir=str(vtm_dir), encoder=str(failing))
    with pytest.raises(CodecError) as excinfo:
        method.encode(astro_odd, 32)
    message = str(excinfo.value)
    assert str(failing) in message and "exit code 1" in message and "boom, cannot parse the cfg" in message


@posix_only
def test_vtm_failing_decoder_raises_codec_error(vtm_dir, astro_odd):
    good = VTM(name="vtm", rates=[32], vtm_dir=str(vtm_dir))
    bitstream = good.encode(astro_odd, 32)
    failing = write_script(vtm_dir / "bin" / "FailingDecoder", FAILING)
    bad = VTM(name="vtm", rates=[32], vtm_dir=str(vtm_dir), decoder=str(failing))
    with pytest.raises(CodecError, match="exit code 1"):
        bad.decode(bitstream)


@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
@pytest.mark.parametrize("full_range", [True, False])
def test_ycbcr_conversion_round_trips(matrix, full_range, astro_odd):
    ycc = rgb_to_ycbcr(astro_odd, matrix, 10, full_range)
    back = ycbcr_to_rgb(np.rint(ycc), matrix, 10, full_range)
    assert np.abs(back.astype(int) - astro_odd).max() <= 1
    # grey stays grey: zero chroma at mid code
    grey = np.full((2, 2, 3), 128, np.uint8)
    assert np.allclose(rgb_to_ycbcr(grey, matrix, 8, full_range)[..., 1:], 128)
