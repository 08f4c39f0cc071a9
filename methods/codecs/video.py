"""Conventional video codecs through PyAV/FFmpeg: H.264 (x264), H.265 (x265), AV1 (SVT-AV1), VP9 (libvpx).

A clip (``T x H x W x 3`` uint8 RGB, :mod:`bench.io.video`) is converted to
``yuv420p`` (swscale, BT.601 limited range, 2x2 area chroma; the conversion
``psnr-yuv420`` uses), encoded, and written by FFmpeg's muxer for the codec's
elementary-stream format: Annex B for H.264 / H.265, a low-overhead OBU
stream for AV1, IVF for VP9. That file is the bitstream: bpp counts all of its
bytes and the decoder is handed exactly them (FFmpeg's demuxer and decoder).
What a decoder needs is counted (parameter sets, sequence headers, every
frame; for VP9 IVF's 32-byte file header and 12 bytes per frame, which hold
the frame sizes), what it does not need is not written: x264's and x265's
"encoder settings" SEI message (0.5-2 KB per stream) is dropped (x265
``info=0``; for x264 FFmpeg's ``filter_units=remove_types=6`` bitstream
filter, as x264 has no switch for it).

Configuration (the low-delay setting of the learned-video-coding
literature's conventional anchors): one intra frame, then P frames only
(IPPP), no B-frames, no look-ahead, GOP = the clip's length unless ``gop`` is
set; no scene-cut intra frames; one thread per encoder (workers give the
parallelism, and the bytes do not depend on the machine's core count).
x264 and x265 use ``tune=zerolatency``; SVT-AV1 ``pred-struct=1`` (low delay);
libvpx ``lag-in-frames=0`` without alt-ref frames. The rate is a CRF (default)
or a fixed QP (``rate_control: qp``). ``options`` adds encoder options.

Odd heights or widths are padded by repeating the last row / column to the
even size 4:2:0 needs, and cropped after decoding; bpp is over the clip's own
pixels (as CompressAI counts an image's). The stream's time base is the
clip's frame rate (25 fps when the clip does not say).
"""

from __future__ import annotations

import io
import numbers
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.io.video import frame_rate, pad_to_even, rgb_to_yuv420, yuv420_to_rgb
from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, MethodUnavailable
from bench.methods.codecs.vtm import VTM

DEFAULT_FPS = 25
STREAM = "video"


@dataclass(frozen=True)
class CodecSpec:
    """How one FFmpeg encoder is driven: its container, rate range and low-delay options."""

    encoder: str
    muxer: str
    max_rate: int
    min_rate: int
    options: Callable[[str, int, int, str | None], dict[str, str]]  # (rate_control, rate, gop, preset)
    bsf: tuple[str, str] | None = None  # (bitstream filter, codec) applied to the encoder's packets


def _x264(rc: str, rate: int, gop: int, preset: str | None) -> dict[str, str]:
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:threads=1"
    return {"preset": preset or "medium", "tune": "zerolatency", rc: str(rate), "x264-params": params}


def _x265(rc: str, rate: int, gop: int, preset: str | None) -> dict[str, str]:
    params = (
        f"{rc}={rate}:keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:info=0"
        ":pools=none:frame-threads=1:log-level=error"
    )
    return {"preset": preset or "medium", "tune": "zerolatency", "x265-params": params}


def _svtav1(rc: str, rate: int, gop: int, preset: str | None) -> dict[str, str]:
    params = f"pred-struct=1:keyint={gop}:scd=0:lp=1" + (":rc=0:aq-mode=0" if rc == "qp" else "")
    return {"preset": preset or "8", rc: str(rate), "svtav1-params": params}


def _vp9(rc: str, rate: int, gop: int, preset: str | None) -> dict[str, str]:
    opts = {
        "b": "0",  # constant quality: no bitrate target
        "crf": str(rate),
        "deadline": "good",
        "cpu-used": preset or "2",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "g": str(gop),
        "row-mt": "0",
        "threads": "1",
    }
    if rc == "qp":
        opts.update({"qmin": str(rate), "qmax": str(rate)})
    return opts


CODECS: dict[str, CodecSpec] = {
    "libx264": CodecSpec("libx264", "h264", 51, 0, _x264, bsf=("filter_units=remove_types=6", "h264")),
    "libx265": CodecSpec("libx265", "hevc", 51, 0, _x265),
    "libsvtav1": CodecSpec("libsvtav1", "obu", 63, 1, _svtav1),
    "libvpx-vp9": CodecSpec("libvpx-vp9", "ivf", 63, 0, _vp9),
}
RATE_CONTROLS = ("crf", "qp")


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MethodUnavailable("PyAV is not installed (pip install av)") from exc
    return av


def _time_base(clip: np.ndarray) -> Fraction:
    fps = frame_rate(clip) or DEFAULT_FPS
    return Fraction(fps).limit_denominator(1001)


class PyAVVideoCodec(Method):
    """One FFmpeg video encoder in its low-delay configuration; rate = CRF or QP (higher: fewer bytes)."""

    family = Family.SBAR
    media: ClassVar[str] = "video"  # codes clips (T x H x W x 3), not images

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        codec: str,
        rate_control: str = "crf",
        preset: str | None = None,
        gop: int | None = None,
        options: Mapping[str, Any] | None = None,
        description: str = "",
    ):
        if codec not in CODECS:
            raise ValueError(f"method {name!r}: codec must be one of {sorted(CODECS)}, not {codec!r}")
        if rate_control not in RATE_CONTROLS:
            raise ValueError(f"method {name!r}: rate_control must be one of {RATE_CONTROLS}, not {rate_control!r}")
        spec = CODECS[codec]
        for rate in rates:
            integer = isinstance(rate, numbers.Integral) and not isinstance(rate, bool)
            if not integer or not spec.min_rate <= rate <= spec.max_rate:
                raise ValueError(
                    f"method {name!r}: {codec} {rate_control} must be an integer in "
                    f"[{spec.min_rate}, {spec.max_rate}], got {rate!r}"
                )
        if gop is not None and int(gop) < 1:
            raise ValueError(f"method {name!r}: gop must be at least 1 (or null for the clip's length)")
        super().__init__(name, rates, description or f"{codec} low delay (IPPP), {rate_control.upper()}")
        self.spec = spec
        self.rate_control = rate_control
        self.preset = None if preset is None else str(preset)
        self.gop = None if gop is None else int(gop)
        self.extra = {str(k): str(v) for k, v in (options or {}).items()}

    def unavailable_reason(self) -> str | None:
        try:
            av = _av()
            av.codec.Codec(self.spec.encoder, "w")
        except MethodUnavailable as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - an FFmpeg build without this encoder
            return f"this PyAV/FFmpeg build has no {self.spec.encoder} encoder ({exc})"
        return None

    def encoder_options(self, rate: int, frames: int) -> dict[str, str]:
        """The encoder options for one clip of ``frames`` frames at ``rate``."""
        opts = self.spec.options(self.rate_control, int(rate), self.gop or frames, self.preset)
        opts.update(self.extra)
        return opts

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        av = _av()
        clip = image
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
            raise CodecError(f"{self.name}: expected a T x H x W x 3 uint8 clip, got {clip.shape} {clip.dtype}")
        frames, height, width = clip.shape[:3]
        coded = pad_to_even(clip)
        if self.spec.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner per encoder unless told
        buf = io.BytesIO()
        payload = 0
        try:
            with av.open(buf, mode="w", format=self.spec.muxer) as container:
                stream = container.add_stream(self.spec.encoder, rate=_time_base(clip))
                stream.width, stream.height = coded.shape[2], coded.shape[1]
                stream.pix_fmt = "yuv420p"
                stream.options = self.encoder_options(rate, frames)
                bsf = av.BitStreamFilterContext(*self.spec.bsf) if self.spec.bsf else None

                def write(packets: list[Any]) -> None:
                    nonlocal payload
                    for packet in packets:
                        for out in bsf.filter(packet) if bsf else [packet]:
                            payload += out.size
                            container.mux(out)

                for index, rgb in enumerate(coded):
                    frame = rgb_to_yuv420(rgb)
                    frame.pts = index
                    write(stream.encode(frame))
                write(stream.encode(None))
                if bsf is not None:
                    for out in bsf.filter(None):
                        payload += out.size
                        container.mux(out)
        except av.FFmpegError as exc:
            raise CodecError(f"{self.name}: {self.spec.encoder} failed at {self.rate_control} {rate}: {exc}") from exc
        data = buf.getvalue()
        if not data:
            raise CodecError(f"{self.name}: {self.spec.encoder} wrote no bytes at {self.rate_control} {rate}")
        info = {
            "codec": self.spec.encoder,
            self.rate_control: int(rate),
            "frames": int(frames),
            "coded_size": [int(coded.shape[1]), int(coded.shape[2])],
            "container": self.spec.muxer,
            "payload_bytes": payload,
        }
        return Bitstream({STREAM: data}, height=height, width=width, info=info)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """The decoded clip, cropped to the original size; SBAR: every target receives it."""
        av = _av()
        try:
            with av.open(io.BytesIO(bitstream.streams[STREAM]), format=self.spec.muxer) as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                frames = [yuv420_to_rgb(f) for f in container.decode(stream)]
        except (av.FFmpegError, KeyError, IndexError) as exc:
            raise CodecError(f"{self.name}: cannot decode the {self.spec.muxer} stream: {exc}") from exc
        if not frames:
            raise CodecError(f"{self.name}: the {self.spec.muxer} stream decoded to no frames")
        clip = np.stack(frames)
        return np.ascontiguousarray(clip[:, : bitstream.height, : bitstream.width])

    def versions(self) -> dict[str, str]:
        av = _av()
        lib = av.library_versions.get("libavcodec", ())
        return {
            "av": av.__version__,
            "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown")),
            "libavcodec": ".".join(str(v) for v in lib),
            "encoder": self.spec.encoder,
        }


class VTMVideo(VTM):
    """VVC with VTM on a clip, low delay P (``encoder_lowdelay_P_vtm.cfg``): rate = QP, higher = fewer bytes.

    The external ``EncoderApp`` / ``DecoderApp`` are located as for the image
    adapter (:class:`~bench.methods.codecs.vtm.VTM`: ``vtm_dir`` or ``VTM_DIR``). The
    clip goes to VTM as an 8-bit 4:2:0 YUV file made by the conversion the
    PyAV codecs use (BT.601 limited range, even-padded), all frames at once
    (``-f T``, ``-fr`` the rounded frame rate); the bitstream file is the
    bytes; the decoder's 8-bit output is converted back and cropped.
    """

    media: ClassVar[str] = "video"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        description: str = "",
        vtm_dir: str | None = None,
        encoder: str = "EncoderAppStatic",
        decoder: str = "DecoderAppStatic",
        encoder_cfg: str = "cfg/encoder_lowdelay_P_vtm.cfg",
        timeout_s: float = 3600.0,
        extra_args: Sequence[str] = (),
    ):
        super().__init__(
            name,
            rates,
            description or "VVC low delay P (VTM), 4:2:0 8 bit, BT.601 limited range",
            vtm_dir=vtm_dir,
            encoder=encoder,
            decoder=decoder,
            encoder_cfg=encoder_cfg,
            chroma="420",
            bit_depth=8,
            matrix="bt601",
            full_range=False,
            timeout_s=timeout_s,
            extra_args=extra_args,
        )

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        reason = self._missing()
        if reason:
            raise MethodUnavailable(reason)
        clip = image
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
            raise CodecError(f"{self.name}: expected a T x H x W x 3 uint8 clip, got {clip.shape} {clip.dtype}")
        encoder, cfg = self._locate(self.encoder, True), self._locate(self.encoder_cfg, False)
        assert encoder is not None and cfg is not None  # checked by _missing
        frames, height, width = clip.shape[:3]
        coded = pad_to_even(clip)
        ch, cw = coded.shape[1:3]
        with tempfile.TemporaryDirectory(prefix="hmc-vtm-") as tmp:
            yuv, bin_path = os.path.join(tmp, "in.yuv"), os.path.join(tmp, "out.bin")
            with open(yuv, "wb") as fh:
                for rgb in coded:
                    fh.write(rgb_to_yuv420(rgb).to_ndarray().tobytes())  # I420: Y, then U, then V
            cmd = [
                str(encoder), "-c", str(cfg.resolve()), "-i", yuv, "-b", bin_path, "-q", str(int(rate)),
                "-wdt", str(cw), "-hgt", str(ch), "-fr", str(max(1, round(frame_rate(clip) or DEFAULT_FPS))),
                "-f", str(frames), "--InputChromaFormat=420", "--InputBitDepth=8", "--OutputBitDepth=8",
                "--ConformanceWindowMode=1", *self.extra_args,
            ]  # fmt: skip
            self._run(cmd, tmp, "encoder", rate)
            try:
                data = Path(bin_path).read_bytes()
            except OSError as exc:
                raise CodecError(f"VTM encoder {encoder} wrote no bitstream at QP {rate}: {exc}") from exc
        if not data:
            raise CodecError(f"VTM encoder {encoder} wrote an empty bitstream at QP {rate}")
        info = {"qp": int(rate), "frames": int(frames), "coded_size": [int(ch), int(cw)]}
        return Bitstream({"main": data}, height=height, width=width, info=info)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        av = _av()
        reason = self._missing()
        if reason:
            raise MethodUnavailable(reason)
        decoder = self._locate(self.decoder, True)
        assert decoder is not None
        h, w = bitstream.height, bitstream.width
        ch, cw = h + h % 2, w + w % 2
        with tempfile.TemporaryDirectory(prefix="hmc-vtm-") as tmp:
            bin_path, rec = os.path.join(tmp, "in.bin"), os.path.join(tmp, "rec.yuv")
            Path(bin_path).write_bytes(bitstream.streams["main"])
            self._run([str(decoder), "-b", bin_path, "-o", rec, "-d", "8"], tmp, "decoder", "?")
            data = np.fromfile(rec, dtype=np.uint8) if os.path.isfile(rec) else np.zeros(0, np.uint8)
        frame_size = ch * cw * 3 // 2
        if data.size == 0 or data.size % frame_size:
            raise CodecError(f"VTM decoder wrote {data.size} bytes, not a whole number of {cw}x{ch} 4:2:0 frames")
        frames = [
            yuv420_to_rgb(av.VideoFrame.from_ndarray(i420, format="yuv420p"))
            for i420 in data.reshape(-1, ch * 3 // 2, cw)
        ]
        return np.ascontiguousarray(np.stack(frames)[:, :h, :w])
