"""``bench verify``: an untouched run verifies; an altered cached stream, a changed sample or changed numbers are
named; a file that is not a run is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from bench.running.app import run_job
from bench.running.recorded import RunFileError
from bench.running.verify import main, verify


@pytest.fixture()
def run(tmp_path: Path, photo_folder: Path) -> tuple[Path, Path]:
    """A JPEG sweep with a bitstream cache: (results JSON, cache folder)."""
    cache = tmp_path / "cache"
    overrides = [
        "method=jpeg", "method.rates=[20,80]", "dataset=folder", f"dataset.root={photo_folder}",
        f"results_dir={tmp_path / 'out'}", f"cache_dir={cache}", "progress=false", "workers=1",
    ]  # fmt: skip
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        out = run_job(compose("config", overrides=overrides))
    return Path(out["json"]), cache


def test_an_untouched_run_verifies_from_its_cache_and_by_encoding_again(run, capsys):
    results, cache = run
    from_cache = verify(results, cache)
    assert from_cache.ok and from_cache.rows == 6 and from_cache.from_cache == 6
    assert from_cache.checked_numbers >= 6 * 4  # one stream hash, bytes, PSNR and MS-SSIM a row at least
    again = verify(results)
    assert again.ok and again.from_cache == 0
    assert main([str(results), "--cache-dir", str(cache)]) == 0
    assert "verified: 6 rows" in capsys.readouterr().out


def test_an_altered_stream_file_is_named(run, capsys):
    results, cache = run
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    victim = entries[0]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF  # a flipped byte inside the JPEG stream
    victim.write_bytes(bytes(data))
    verdict = verify(results, cache)
    assert not verdict.ok
    assert any("stream 'main' SHA-256" in str(m) for m in verdict.mismatches)
    assert main([str(results), "--cache-dir", str(cache)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_a_changed_number_or_sample_is_named(run, photo_folder):
    results, _ = run
    rows_path = results.parent.parent / json.loads(results.read_text())["meta"]["rows"]
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()]
    rows[0]["psnr-rgb"] += 0.5  # a number that does not follow from the bytes
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = verify(results)
    assert [(m.sample, m.what) for m in bad.mismatches] == [(rows[0]["sample"], "psnr-rgb")]
    (photo_folder / "coffee.png").write_bytes((photo_folder / "astronaut.png").read_bytes())  # other pixels
    changed = verify(results)
    assert [(m.sample, m.what) for m in changed.mismatches] == [("coffee.png", "sample content")]


def test_not_a_results_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(RunFileError, match="no meta.config.method/dataset"):
        verify(bad)
    assert main([str(bad)]) == 2
