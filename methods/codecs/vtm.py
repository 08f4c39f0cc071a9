"""VVC intra through the VTM reference software (external ``EncoderApp`` / ``DecoderApp``).

VTM is not on PyPI or Debian; it is built from
https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM (cmake; on Linux the
binaries land in ``bin/`` as ``EncoderAppStatic`` and ``DecoderAppStatic``).
Point ``vtm_dir`` (or ``VTM_DIR``) at the clone, or give the paths directly.

One run, as CompressAI's VTM anchor does it: RGB -> Y'CbCr (matrix ``bt709``
like CompressAI, or ``bt601``; full range by default) -> planar YUV file,
4:4:4 or 4:2:0 (2x2 box-filtered chroma; the picture is padded to even size by
edge replication and cropped back), 8 or 10 bit -> ``EncoderApp -c <cfg>
-q <QP>`` with the all-intra cfg, one frame -> the bitstream file is the bytes
-> ``DecoderApp -d <bit depth>`` -> Y'CbCr -> RGB (bilinear chroma upsampling
for 4:2:0), rounded to uint8. Rate = QP 0..63; higher QP = fewer bytes.
"""

from __future__ import annotations

import numbers
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, MethodUnavailable

VTM_URL = "https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM"
_MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}  # (Kr, Kb)
_CHROMA = ("444", "420")
_STDERR_TAIL = 2000


def rgb_to_ycbcr(rgb: np.ndarray, matrix: str, bit_depth: int, full_range: bool) -> np.ndarray:
    """H x W x 3 uint8 RGB -> H x W x 3 float Y'CbCr code values (unrounded)."""
    kr, kb = _MATRICES[matrix]
    kg = 1.0 - kr - kb
    x = rgb.astype(np.float64) / 255.0
    y = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    cb = (x[..., 2] - y) / (2.0 * (1.0 - kb))
    cr = (x[..., 0] - y) / (2.0 * (1.0 - kr))
    mid = 2 ** (bit_depth - 1)
    if full_range:
        top = 2**bit_depth - 1
        return np.stack([y * top, cb * top + mid, cr * top + mid], axis=-1)
    scale = 2 ** (bit_depth - 8)
    return np.stack([(219.0 * y + 16.0) * scale, cb * 224.0 * scale + mid, cr * 224.0 * scale + mid], axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray, matrix: str, bit_depth: int, full_range: bool) -> np.ndarray:
    """H x W x 3 Y'CbCr code values -> H x W x 3 uint8 RGB (rounded, clipped)."""
    kr, kb = _MATRICES[matrix]
    kg = 1.0 - kr - kb
    ycc = ycc.astype(np.float64)
    mid = 2 ** (bit_depth - 1)
    if full_range:
        top = 2**bit_depth - 1
        y, cb, cr = ycc[..., 0] / top, (ycc[..., 1] - mid) / top, (ycc[..., 2] - mid) / top
    else:
        scale = 2 ** (bit_depth - 8)
        y = (ycc[..., 0] / scale - 16.0) / 219.0
        cb, cr = (ycc[..., 1] - mid) / scale / 224.0, (ycc[..., 2] - mid) / scale / 224.0
    r = y + 2.0 * (1.0 - kr) * cr
    b = y + 2.0 * (1.0 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _tail(text: bytes | str | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text[-_STDERR_TAIL:]


class VTM(Method):
    """VVC all-intra with VTM's EncoderApp/DecoderApp, rate = QP."""

    family = Family.SBAR

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        description: str = "",
        vtm_dir: str | None = None,
        encoder: str = "EncoderAppStatic",
        decoder: str = "DecoderAppStatic",
        encoder_cfg: str = "cfg/encoder_intra_vtm.cfg",
        chroma: str = "444",
        bit_depth: int = 8,
        matrix: str = "bt709",
        full_range: bool = True,
        timeout_s: float = 3600.0,
        extra_args: Sequence[str] = (),
    ):
        super().__init__(name, rates, description or f"VVC intra (VTM), {chroma}, {bit_depth} bit, {matrix}")
        for rate in self.rates:
            if not isinstance(rate, numbers.Integral) or isinstance(rate, bool) or not 0 <= rate <= 63:
                raise ValueError(f"{name}: VTM rate must be an integer QP in [0, 63], got {rate!r}")
        if str(chroma) not in _CHROMA:
            raise ValueError(f"{name}: chroma must be one of {_CHROMA}, not {chroma!r}")
        if int(bit_depth) not in (8, 10):
            raise ValueError(f"{name}: bit_depth must be 8 or 10, not {bit_depth!r}")
        if matrix not in _MATRICES:
            raise ValueError(f"{name}: matrix must be one of {sorted(_MATRICES)}, not {matrix!r}")
        self.vtm_dir = Path(vtm_dir).expanduser() if vtm_dir else None
        self.encoder, self.decoder, self.encoder_cfg = str(encoder), str(decoder), str(encoder_cfg)
        self.chroma, self.bit_depth, self.matrix = str(chroma), int(bit_depth), matrix
        self.full_range = bool(full_range)
        self.timeout_s = float(timeout_s)
        self.extra_args = [str(a) for a in extra_args]
        self._version: str | None = None

    # --- locating the binaries -----------------------------------------------
    def _candidates(self, path: str, binary: bool) -> list[Path]:
        p = Path(path).expanduser()
        if p.is_absolute():
            return [p]
        found: list[Path] = []
        if self.vtm_dir is not None:
            found += [self.vtm_dir / "bin" / p, self.vtm_dir / p] if binary else [self.vtm_dir / p]
        if binary and len(p.parts) == 1:
            which = shutil.which(path)
            if which:
                found.append(Path(which))
        found.append(p)  # relative to the working directory
        if not binary:  # a cfg path relative to the clone the encoder sits in (<clone>/bin/EncoderApp)
            encoder = self._locate(self.encoder, True)
            if encoder is not None:
                found.append(encoder.resolve().parent.parent / p)
        return found

    def _locate(self, path: str, binary: bool) -> Path | None:
        for cand in self._candidates(path, binary):
            if cand.is_file() and (not binary or os.access(cand, os.X_OK)):
                return cand
        return None

    def _missing(self) -> str | None:
        for what, path, binary in (
            ("encoder", self.encoder, True),
            ("decoder", self.decoder, True),
            ("encoder cfg", self.encoder_cfg, False),
        ):
            if self._locate(path, binary) is None:
                looked = ", ".join(str(c) for c in self._candidates(path, binary))
                on_path = ", and on PATH" if binary and len(Path(path).parts) == 1 else ""
                return (
                    f"VTM {what} {path!r} not found (looked at: {looked}{on_path}). "
                    f"VTM, the VVC reference software, is not on PyPI or Debian: clone {VTM_URL}, build it with "
                    "cmake (binaries land in bin/ as EncoderAppStatic/DecoderAppStatic on Linux), then set "
                    "vtm_dir (or VTM_DIR) to the clone, or encoder/decoder/encoder_cfg in conf/method/vtm.yaml."
                )
        return None

    def unavailable_reason(self) -> str | None:
        return self._missing()

    # --- running them ----------------------------------------------------------
    def _run(self, cmd: list[str], cwd: str, what: str, rate: Any) -> str:
        """Run one VTM binary; its stdout on success, ``CodecError`` otherwise."""
        binary = cmd[0]
        posix = os.name == "posix"
        try:
            proc = subprocess.Popen(
                cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=posix
            )
        except OSError as exc:
            raise CodecError(f"VTM {what} {binary} could not start at QP {rate}: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            # kill the whole process group we started, so no child keeps the pipes open
            try:
                if posix:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except ProcessLookupError:  # it ended in the meantime
                pass
            out, err = proc.communicate()
            raise CodecError(
                f"VTM {what} {binary} timed out after {self.timeout_s:g} s at QP {rate}; "
                f"stderr tail: {_tail(err) or '(empty)'}"
            ) from None
        if proc.returncode != 0:
            raise CodecError(
                f"VTM {what} {binary} failed with exit code {proc.returncode} at QP {rate}; "
                f"stderr tail: {_tail(err) or '(empty)'}; stdout tail: {_tail(out)[-500:] or '(empty)'}"
            )
        text = out.decode("utf-8", errors="replace")
        match = re.search(r"VTM (?:Encoder|Decoder) Version (\S+)", text)
        if match and what == "encoder":
            self._version = match.group(1)
        return text

    def _coded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size written to the YUV file: even for 4:2:0 (edge-padded)."""
        if self.chroma == "420":
            return height + height % 2, width + width % 2
        return height, width

    def _sample_dtype(self) -> np.dtype:
        """8 bit: one byte a sample; 10 bit: little-endian 16-bit words, as VTM reads and writes."""
        return np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype("<u2")

    def _write_yuv(self, image: np.ndarray, path: str) -> tuple[int, int]:
        h, w = image.shape[:2]
        ch, cw = self._coded_size(h, w)
        if (ch, cw) != (h, w):
            image = np.pad(image, ((0, ch - h), (0, cw - w), (0, 0)), mode="edge")
        ycc = rgb_to_ycbcr(image, self.matrix, self.bit_depth, self.full_range)
        planes = [ycc[..., 0], ycc[..., 1], ycc[..., 2]]
        if self.chroma == "420":
            planes[1:] = [cv2.resize(p, (cw // 2, ch // 2), interpolation=cv2.INTER_AREA) for p in planes[1:]]
        dtype = self._sample_dtype()
        top = 2**self.bit_depth - 1
        with open(path, "wb") as f:
            for p in planes:
                f.write(np.clip(np.rint(p), 0, top).astype(dtype).tobytes())
        return ch, cw

    def _read_yuv(self, path: str, ch: int, cw: int, rate: Any) -> np.ndarray:
        dtype = self._sample_dtype()
        sh, sw = (ch // 2, cw // 2) if self.chroma == "420" else (ch, cw)
        expected = (ch * cw + 2 * sh * sw) * dtype.itemsize
        data = np.fromfile(path, dtype=dtype)
        if data.nbytes != expected:
            raise CodecError(
                f"VTM decoder output at QP {rate} has {data.nbytes} bytes, expected {expected} "
                f"for {cw}x{ch} {self.chroma} {self.bit_depth}-bit"
            )
        y = data[: ch * cw].reshape(ch, cw).astype(np.float32)
        cb = data[ch * cw : ch * cw + sh * sw].reshape(sh, sw).astype(np.float32)
        cr = data[ch * cw + sh * sw :].reshape(sh, sw).astype(np.float32)
        if self.chroma == "420":
            cb, cr = (cv2.resize(p, (cw, ch), interpolation=cv2.INTER_LINEAR) for p in (cb, cr))
        return np.stack([y, cb, cr], axis=-1)

    # --- the Method interface --------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        reason = self._missing()
        if reason:
            raise MethodUnavailable(reason)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"VTM: expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
        encoder = self._locate(self.encoder, True)
        cfg = self._locate(self.encoder_cfg, False)
        assert encoder is not None and cfg is not None  # checked by _missing
        h, w = image.shape[:2]
        with tempfile.TemporaryDirectory(prefix="hmc-vtm-") as tmp:
            yuv, bin_path = os.path.join(tmp, "in.yuv"), os.path.join(tmp, "out.bin")
            ch, cw = self._write_yuv(image, yuv)
            cmd = [
                str(encoder),
                "-c", str(cfg.resolve()),
                "-i", yuv,
                "-b", bin_path,
                "-q", str(int(rate)),
                "-wdt", str(cw),
                "-hgt", str(ch),
                "-fr", "1",
                "-f", "1",
                f"--InputChromaFormat={self.chroma}",
                f"--ChromaFormatIDC={self.chroma}",
                f"--InputBitDepth={self.bit_depth}",
                "--ConformanceWindowMode=1",
                *self.extra_args,
            ]  # fmt: skip
            self._run(cmd, tmp, "encoder", rate)
            try:
                data = Path(bin_path).read_bytes()
            except OSError as exc:
                raise CodecError(f"VTM encoder {encoder} wrote no bitstream at QP {rate}: {exc}") from exc
        if not data:
            raise CodecError(f"VTM encoder {encoder} wrote an empty bitstream at QP {rate}")
        info = {"qp": int(rate), "chroma": self.chroma, "bit_depth": self.bit_depth, "coded_size": [ch, cw]}
        return Bitstream({"main": data}, height=h, width=w, info=info)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        reason = self._missing()
        if reason:
            raise MethodUnavailable(reason)
        decoder = self._locate(self.decoder, True)
        assert decoder is not None
        rate = bitstream.info.get("qp")
        h, w = bitstream.height, bitstream.width
        ch, cw = self._coded_size(h, w)
        with tempfile.TemporaryDirectory(prefix="hmc-vtm-") as tmp:
            bin_path, rec = os.path.join(tmp, "in.bin"), os.path.join(tmp, "rec.yuv")
            Path(bin_path).write_bytes(bitstream.streams["main"])
            self._run([str(decoder), "-b", bin_path, "-o", rec, "-d", str(self.bit_depth)], tmp, "decoder", rate)
            if not os.path.isfile(rec):
                raise CodecError(f"VTM decoder {decoder} wrote no picture at QP {rate}")
            ycc = self._read_yuv(rec, ch, cw, rate)
        rgb = ycbcr_to_rgb(ycc, self.matrix, self.bit_depth, self.full_range)
        return np.ascontiguousarray(rgb[:h, :w])

    def versions(self) -> dict[str, str]:
        """The VTM version its encoder printed (known after the first encode)."""
        return {"vtm": self._version or "unknown"}
