"""Bad and unusual input files: each converted by the documented rule or rejected by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.io.images import ImageError, as_rgb8, read_rgb8


def test_rgb_png_round_trips_exactly(tmp_path, photos):
    path = tmp_path / "a.png"
    Image.fromarray(photos["coffee"]).save(path)
    assert np.array_equal(read_rgb8(path), photos["coffee"])


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_rgb8(tmp_path / "g.png")
    assert out.shape == (16, 16, 3) and np.array_equal(out[:, :, 1], gray)


def test_rgba_drops_alpha_like_compressai(tmp_path, photos):
    rgb = photos["chelsea"][:40, :50]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_rgb8(tmp_path / "a.png"), rgb)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    out = read_rgb8(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_cmyk_jpeg_is_converted(tmp_path, photos):
    Image.fromarray(photos["coffee"][:64, :64]).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = read_rgb8(tmp_path / "c.jpg")
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - photos["coffee"][:64, :64]).mean() < 12


def test_palette_is_expanded(tmp_path, photos):
    Image.fromarray(photos["coffee"][:32, :32]).convert("P").save(tmp_path / "p.png")
    assert read_rgb8(tmp_path / "p.png").shape == (32, 32, 3)


def test_empty_file_is_rejected_by_name(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: empty file"):
        read_rgb8(path)


def test_not_an_image_is_rejected_by_name(tmp_path):
    path = tmp_path / "text.jpg"
    path.write_text("hello")
    with pytest.raises(ImageError, match="text.jpg: not an image"):
        read_rgb8(path)


def test_truncated_file_is_rejected_by_name(tmp_path, photos):
    path = tmp_path / "cut.png"
    Image.fromarray(photos["astronaut"]).save(path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        read_rgb8(path)


def test_missing_file_is_rejected_by_name(tmp_path):
    with pytest.raises(ImageError, match="nope.png: cannot read"):
        read_rgb8(tmp_path / "nope.png")


def test_in_memory_arrays_are_normalised():
    assert as_rgb8(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert as_rgb8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ImageError, match="float64"):
        as_rgb8(np.zeros((4, 5, 3)))
