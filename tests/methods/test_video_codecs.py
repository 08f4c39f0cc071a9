"""Video codecs write real bytes (PyAV/FFmpeg, CompressAI ssf2020, VTM), and the video metrics against references."""

from __future__ import annotations

import io
import math
import os
import stat
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bench.io.video import Clip, pad_to_even, rgb_to_yuv420, yuv420_planes, yuv420_to_rgb
from bench.methods.base import Bitstream, CodecError, MethodUnavailable
from bench.methods.codecs.video import CODECS, PyAVVideoCodec, VTMVideo
from bench.metrics import video as VM
from tests.video_fixtures import moving_shapes

ODD = (6, 45, 63)  # frames, height, width: odd sizes exercise the even-padding rule


@pytest.fixture(scope="module")
def clip() -> Clip:
    return Clip(moving_shapes(*ODD), fps=25)


RATES = {"libx264": (40, 22), "libx265": (40, 22), "libsvtav1": (55, 25), "libvpx-vp9": (55, 25)}
CODEC_OF_MUXER = {"h264": "h264", "hevc": "hevc", "obu": "av1", "ivf": "vp9"}


def packets_and_pictures(data: bytes, muxer: str) -> tuple[str, list[int], list[str]]:
    """An independent look at the bytes: codec, packet sizes and picture types, as FFmpeg demuxes them."""
    with av.open(io.BytesIO(data), format=muxer) as container:
        stream = container.streams.video[0]
        name = stream.codec_context.name
        packets = [p for p in container.demux(stream) if p.size]
    with av.open(io.BytesIO(data), format=muxer) as container:
        pictures = [av.video.frame.PictureType(f.pict_type).name for f in container.decode(video=0)]
    return name, [p.size for p in packets], pictures


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_writes_a_decodable_low_delay_stream_of_real_bytes(clip, codec):
    method = PyAVVideoCodec(codec, list(RATES[codec]), codec)
    streams = [method.encode(clip, r) for r in method.rates]
    frames, height, width = ODD
    sizes = []
    for written in streams:
        data = written.streams["video"]
        muxer = CODECS[codec].muxer
        name, packet_sizes, pictures = packets_and_pictures(data, muxer)
        assert name in (CODEC_OF_MUXER[muxer], "libdav1d")
        assert len(pictures) == frames and pictures[0] == "I" and set(pictures[1:]) == {"P"}  # IPPP, no B
        if muxer == "ivf":  # IVF: 32-byte file header + 12 bytes per frame around the packets
            assert len(data) == 32 + 12 * len(packet_sizes) + sum(packet_sizes)
        else:
            assert len(data) == sum(packet_sizes)
        assert b"x264 - core" not in data and b"x265 (build" not in data  # settings SEI not written
        decoded = method.decode(written)
        assert decoded.shape == clip.shape and decoded.dtype == np.uint8
        assert VM.psnr_yuv420(decoded, clip) > 28
        assert VM.rate_columns(written.num_bytes(), clip) == {
            "bpp": len(data) * 8 / (frames * height * width),
            "kbps": len(data) * 8 * 25 / (frames * 1000),
            "frames": frames,
        }
        sizes.append(len(data))
    assert sizes[0] < sizes[1]  # a lower CRF spends more bytes
    assert method.encode(clip, method.rates[0]).streams == streams[0].streams  # same bytes every time


def test_fixed_qp_and_periodic_intra_frames(clip):
    method = PyAVVideoCodec("h264", [30], "libx264", rate_control="qp", gop=3)
    written = method.encode(clip, 30)
    _, _, pictures = packets_and_pictures(written.streams["video"], "h264")
    assert pictures == ["I", "P", "P", "I", "P", "P"]
    with pytest.raises(ValueError, match=r"libx264 crf must be an integer in \[0, 51\]"):
        PyAVVideoCodec("h264", [60], "libx264")


def test_garbage_bytes_fail_to_decode_with_a_codec_error(clip):
    method = PyAVVideoCodec("h265", [30], "libx265")
    with pytest.raises(CodecError, match="h265"):
        method.decode(Bitstream({"video": b"\x00\x01garbage" * 10}, *ODD[1:]))
    with pytest.raises(CodecError, match="expected a T x H x W x 3"):
        method.encode(np.zeros((45, 63, 3), np.uint8), 30)


def test_yuv420_planes_are_bt601_limited_range_with_box_chroma(clip):
    frame = np.asarray(clip[0])[:44, :62]  # even: 2x2 chroma blocks
    y, u, v = yuv420_planes(frame)
    rgb = frame.astype(np.float64) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    cb, cr = (rgb[..., 2] - luma) / 1.772, (rgb[..., 0] - luma) / 1.402
    box = lambda p: p.reshape(22, 2, 31, 2).mean(axis=(1, 3))  # noqa: E731
    # rounded to the nearest code value, up to swscale's fixed-point arithmetic
    for plane, exact in ((y, 16 + 219 * luma), (u, box(128 + 224 * cb)), (v, box(128 + 224 * cr))):
        assert np.abs(plane - exact).max() < 0.6 and np.abs(plane - exact).mean() < 0.3


def ffmpeg_psnr_yuv420(a: np.ndarray, b: np.ndarray) -> float:
    """(6 Y + U + V) / 8 from FFmpeg's psnr filter: its per-frame MSE of each plane, averaged over the frames."""
    h, w = a.shape[1:3]
    graph = av.filter.Graph()
    src = [graph.add_buffer(width=w, height=h, format="yuv420p", time_base=Fraction(1, 25)) for _ in range(2)]
    psnr, sink = graph.add("psnr"), graph.add("buffersink")
    src[0].link_to(psnr, 0, 0)
    src[1].link_to(psnr, 0, 1)
    psnr.link_to(sink)
    graph.configure()
    mse = {"y": [], "u": [], "v": []}
    for i, (fa, fb) in enumerate(zip(a, b)):
        for k, frame in enumerate((fa, fb)):
            planes = yuv420_planes(frame)
            yuv = av.VideoFrame.from_ndarray(
                np.concatenate([planes[0], *(p.reshape(-1, w) for p in planes[1:])]), format="yuv420p"
            )
            yuv.pts = i
            src[k].push(yuv)
        meta = sink.pull().metadata
        for c in mse:
            mse[c].append(float(meta[f"lavfi.psnr.mse.{c}"]))
    psnrs = [10 * math.log10(255**2 / np.mean(mse[c])) for c in "yuv"]
    return (6 * psnrs[0] + psnrs[1] + psnrs[2]) / 8


def test_psnr_yuv420_and_psnr_rgb_against_independent_computations(clip):
    even = Clip(np.asarray(clip)[:, :44, :62], fps=25)
    method = PyAVVideoCodec("h264", [35], "libx264")
    decoded = method.decode(method.encode(even, 35))
    assert VM.psnr_yuv420(decoded, even) == pytest.approx(ffmpeg_psnr_yuv420(decoded, even), abs=1e-4)
    diff = decoded.astype(np.float64) - np.asarray(even)
    assert VM.psnr_rgb(decoded, even) == pytest.approx(10 * math.log10(255**2 / np.mean(diff**2)), abs=1e-9)
    assert VM.psnr_yuv420(even, even) == math.inf


def test_ms_ssim_of_a_clip_is_the_mean_over_its_frames():
    torch = pytest.importorskip("torch")
    from pytorch_msssim import ms_ssim

    a = moving_shapes(2, 168, 176, seed=3)
    b = np.clip(a.astype(np.int16) + np.random.default_rng(0).integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    as_tensor = lambda x: torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)  # noqa: E731
    per_frame = ms_ssim(as_tensor(b), as_tensor(a), data_range=255, size_average=False)
    assert VM.ClipMSSSIM(a)(b) == pytest.approx(float(per_frame.mean()), rel=1e-5)
    with pytest.raises(ValueError, match="MS-SSIM needs"):
        VM.ClipMSSSIM(moving_shapes(2, 48, 64))


# --- CompressAI ssf2020, seeded untrained weights: bytes and decode consistency ----------------------------


@pytest.fixture(scope="module")
def ssf_checkpoint(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from compressai.models.video import ScaleSpaceFlow

    torch.manual_seed(0)
    net = ScaleSpaceFlow()
    net.update(force=True)
    path = tmp_path_factory.mktemp("ssf") / "ssf2020-seeded.pth"
    torch.save(net.state_dict(), path)
    return path


def test_ssf2020_bytes_are_compressais_strings_and_decode_to_the_encoders_reconstruction(ssf_checkpoint):
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    from bench.methods.learned.ssf2020 import SSF2020

    torch.set_num_threads(1)
    clip = Clip(moving_shapes(3, 40, 58, seed=5), fps=25)
    method = SSF2020("ssf2020", [4], checkpoints={4: str(ssf_checkpoint)})
    assert method.unavailable_reason() is None
    written = method.encode(clip, 4)
    decoded = method.decode(written)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8

    # independently, the loop of compressai.utils.video.eval_model on the same network
    net = method.network(4)
    pad, unpad = compute_padding(40, 58, min_div=128)
    strings, expected = [], []
    with torch.no_grad():
        x_ref = None
        for frame in clip:
            x = F.pad(torch.from_numpy(np.asarray(frame)).permute(2, 0, 1)[None].float() / 255, pad)
            if x_ref is None:
                x_ref, out = net.encode_keyframe(x)
                strings += [out["strings"][0][0], out["strings"][1][0]]
            else:
                x_ref, out = net.encode_inter(x, x_ref)
                strings += [s[0] for k in ("motion", "residual") for s in out["strings"][k]]
            x_ref = x_ref.clamp(0, 1)
            rec = (F.pad(x_ref, unpad)[0] * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            expected.append(rec)
    assert written.streams["frames"] == b"".join(strings)
    assert np.array_equal(decoded, np.stack(expected))
    assert written.num_bytes() == len(written.streams["header"]) + len(b"".join(strings))

    broken = Bitstream({"header": written.streams["header"], "frames": written.streams["frames"][:-1]}, 40, 58)
    with pytest.raises(CodecError, match="payload bytes"):
        method.decode(broken)


def test_ssf2020_offline_names_the_file_and_the_url(tmp_path, monkeypatch):
    pytest.importorskip("compressai")
    from bench.methods.learned.ssf2020 import SSF2020

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reason = SSF2020("ssf2020", [2]).unavailable_reason()
    assert reason is not None and "ssf2020-mse-2-79ed4e19.pth.tar" in reason and str(tmp_path / "torch") in reason
    assert "https://compressai.s3.amazonaws.com/models/v1/ssf2020-mse-2-79ed4e19.pth.tar" in reason


def test_ssf2020_rejects_unknown_qualities_and_metrics():
    from bench.methods.learned.ssf2020 import SSF2020

    with pytest.raises(ValueError, match=r"ssf2020 has qualities 1..9; got \[10\]"):
        SSF2020("ssf2020", [1, 10])
    with pytest.raises(ValueError, match=r"metric must be one of \('mse',\), not 'ms-ssim'"):
        SSF2020("ssf2020", [1], metric="ms-ssim")


def test_ssf2020_wrong_or_unreadable_checkpoint_names_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    from compressai.zoo import bmshj2018_hyperprior

    from bench.methods.learned.ssf2020 import SSF2020

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(MethodUnavailable, match="cannot read checkpoint") as err:
        SSF2020("ssf2020", [4], checkpoints={4: str(garbage)}).network(4)
    assert str(garbage) in str(err.value)

    image_codec = tmp_path / "hyperprior.pth"
    torch.save(bmshj2018_hyperprior(quality=1).state_dict(), image_codec)
    with pytest.raises(MethodUnavailable, match="does not hold ssf2020 weights") as err:
        SSF2020("ssf2020", [4], checkpoints={4: str(image_codec)}).network(4)
    assert str(image_codec) in str(err.value)


# --- VTM on clips, through fake binaries that check what the adapter writes ---------------------------------

FAKE_VTM_ENCODER = """
import sys, zlib
import numpy as np
args, opts, i = sys.argv[1:], {}, 0
while i < len(args):
    if "=" in args[i]:
        k, v = args[i].lstrip("-").split("=", 1); opts[k] = v; i += 1
    else:
        opts[args[i].lstrip("-")] = args[i + 1]; i += 2
print("VVCSoftware: VTM Encoder Version 0.0-fake")
w, h, n, qp = int(opts["wdt"]), int(opts["hgt"]), int(opts["f"]), int(opts["q"])
assert opts["InputChromaFormat"] == "420" and opts["InputBitDepth"] == "8" and w % 2 == 0 and h % 2 == 0, opts
x = np.fromfile(opts["i"], dtype=np.uint8)
if x.size != n * w * h * 3 // 2:
    sys.exit(f"yuv has {x.size} samples, expected {n} frames of {w}x{h} 4:2:0")
step = 2 ** (qp // 8)
open(opts["b"], "wb").write(zlib.compress(((x // step) * step).tobytes(), 9))
"""

FAKE_VTM_DECODER = """
import sys, zlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
open(args["-o"], "wb").write(zlib.decompress(open(args["-b"], "rb").read()))
"""


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(os.name != "posix", reason="fake binaries are shebang scripts")
def test_vtm_video_sends_the_whole_clip_as_one_420_sequence(tmp_path, clip):
    root = tmp_path / "VTM"
    _script(root / "bin" / "EncoderAppStatic", FAKE_VTM_ENCODER)
    _script(root / "bin" / "DecoderAppStatic", FAKE_VTM_DECODER)
    (root / "cfg").mkdir()
    (root / "cfg" / "encoder_lowdelay_P_vtm.cfg").write_text("# fake\n")
    method = VTMVideo("vtm-video", [0, 40], vtm_dir=str(root), timeout_s=60)
    lossless, coarse = (method.encode(clip, q) for q in method.rates)
    assert lossless.info["frames"] == ODD[0] and lossless.info["coded_size"] == [46, 64]
    assert coarse.num_bytes() < lossless.num_bytes()
    decoded = method.decode(lossless)
    assert decoded.shape == clip.shape
    # QP 0 in the fake is lossless: what comes back is exactly the 4:2:0 frames sent, back in RGB and cropped
    sent = [yuv420_to_rgb(rgb_to_yuv420(f))[:45, :63] for f in pad_to_even(np.asarray(clip))]
    assert np.array_equal(decoded, np.stack(sent))

    missing = VTMVideo("vtm-video", [32], vtm_dir=str(tmp_path / "none"))
    with pytest.raises(MethodUnavailable, match="EncoderAppStatic"):
        missing.encode(clip, 32)
