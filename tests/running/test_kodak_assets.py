"""On the real Kodak suite: the harness gives CompressAI's published-tool numbers.

Needs HMC_BENCH_ASSETS (the shared assets folder); skipped otherwise. The
reference JSONs are what ``python -m compressai.utils.bench jpeg|webp kodak/
-q 5,10,...,95`` printed with the same Pillow.
"""

from __future__ import annotations

import json

import PIL
import pytest
from conftest import assets_dir, requires_assets

from bench.datasets.folder import Kodak
from bench.methods.codecs.pillow import PillowCodec
from bench.running.runner import run_sweep
from bench.running.store import RunStore, aggregate

pytestmark = [pytest.mark.assets, requires_assets]


@pytest.mark.parametrize("codec,fmt", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_kodak_matches_compressai_bench(tmp_path, codec, fmt):
    root = assets_dir()
    reference_file = root / "reference_rd" / "compressai_bench_pillow13" / f"kodak_{codec}_q5-95.json"
    reference = json.loads(reference_file.read_text())
    if PIL.__version__ not in reference["description"]:
        pytest.skip(f"reference made with another Pillow: {reference['description']}")
    dataset = Kodak(root / "kodak")
    method = PillowCodec(codec, list(range(5, 100, 5)), fmt)
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    stats = run_sweep(method, dataset, store, workers=2, progress=False)
    assert stats["failed"] == 0 and stats["samples"] == 24
    table = aggregate(store.sample_table(), method.rates)
    expected = reference["results"]
    assert table["bpp"].tolist() == pytest.approx(expected["bpp"], rel=1e-6)
    assert table["psnr-rgb"].tolist() == pytest.approx(expected["psnr-rgb"], rel=1e-6)
    assert table["ms-ssim-rgb"].tolist() == pytest.approx(expected["ms-ssim-rgb"], rel=1e-5)
