"""Synthetic video the video tests make themselves: moving shapes written with PyAV, and a UCF101-style tree."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: (class index 1-based, class folder) of the synthetic UCF101 tree; HandstandPushups has UCF101's case quirk
CLASSES = [(1, "ApplyEyeMakeup"), (2, "Basketball"), (3, "HandstandPushups")]


def moving_shapes(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured background, a disc and a square moving across it; frame ``i``'s top-left 8x8 block is 10 + 12 i."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    base = np.stack([(xx * 3) % 256, (yy * 2) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(np.float64)
    texture = rng.normal(0, 6, (height, width, 3))
    colour_a, colour_b = rng.integers(40, 255, 3), rng.integers(40, 255, 3)
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        f = base + texture
        cy, cx = height * 0.5 + height * 0.3 * np.sin(t / 4), width * (0.2 + 0.6 * t / max(1, frames - 1))
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) / 6) ** 2] = colour_a
        top, left = (3 * t) % max(1, height - 20), width - 24 - (2 * t) % max(1, width - 30)
        f[top : top + 16, left : left + 16] = colour_b
        f[:8, :8] = 10 + 12 * t
        clip[t] = np.clip(f, 0, 255).astype(np.uint8)
    return clip


def write_video(
    path: Path, clip: np.ndarray, fps: int = 25, codec: str = "mpeg4", b_frames: int = 2, pix_fmt: str = "yuv420p"
) -> Path:
    """Write ``clip`` with PyAV (MPEG-4 Part 2 in AVI with B-frames, like UCF101's XviD clips, by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = clip.shape[2], clip.shape[1], pix_fmt
        stream.bit_rate = 8_000_000
        stream.codec_context.max_b_frames = b_frames
        for i, frame in enumerate(clip):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return path


def write_ucf101_tree(root: Path, frames: int = 20, height: int = 168, width: int = 176) -> dict[str, int]:
    """A tiny UCF101 in the official layout (CRLF split files, 1-based classInd); video id -> 0-based label."""
    labels = {}
    test_lines, train_lines = [], []
    for k, (index, name) in enumerate(CLASSES):
        stem = "HandStandPushups" if name == "HandstandPushups" else name  # as UCF101 names those files
        for group in (1, 8):
            video = f"{name}/v_{stem}_g{group:02d}_c01.avi"
            write_video(root / "UCF-101" / video, moving_shapes(frames, height, width, seed=10 * k + group))
            if group == 1:
                test_lines.append(video)
                labels[video] = index - 1
            else:
                train_lines.append(f"{video} {index}")
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    crlf = "".join(f"{line}\r\n" for line in [f"{i} {n}" for i, n in CLASSES])
    (lists / "classInd.txt").write_bytes(crlf.encode())
    (lists / "testlist01.txt").write_bytes("".join(f"{v}\r\n" for v in test_lines).encode())
    (lists / "trainlist01.txt").write_bytes("".join(f"{v}\r\n" for v in train_lines).encode())
    return labels
