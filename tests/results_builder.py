"""Results as the runner writes them (rows log, ``aggregate``, ``compressai_json``, the meta of ``run_job``), from
per-sample rows the tests choose, so report and leaderboard tests know every number behind a curve."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.io.digests import json_sha256
from bench.running.store import RowLog, aggregate, compressai_json

RATES = [10, 30, 60, 90]
BASE_BPP = [0.25, 0.5, 1.0, 2.0]
BASE_PSNR = [28.0, 31.0, 34.0, 37.0]
BASE_SSIM = [0.90, 0.95, 0.975, 0.99]
SAMPLES = [f"img{i}" for i in range(6)]


def content(sample: str) -> str:
    return f"pixels:{sample}"


def sample_rows(
    sample: str, *, scale: float = 1.0, gain: float = 0.0, total_extra: float = 0.0, rates: Sequence[Any] = RATES
) -> list[dict[str, Any]]:
    """One row per rate point: each sample its own rate factor and PSNR offset (so sample sets change the means);
    ``scale`` multiplies bpp, ``gain`` adds dB, ``total_extra`` is a second stream's bpp (``bpp_total``)."""
    k = SAMPLES.index(sample)
    factor, offset = 0.7 + 0.13 * k, 1.7 * ((k * 7) % 5 - 2)
    rows = []
    for i, rate in enumerate(rates):
        bpp = BASE_BPP[i] * factor * scale
        row = {
            "sample": sample,
            "rate": rate,
            "content": content(sample),
            "weights": "",
            "error": None,
            "bpp": bpp,
            "bpp_total": bpp + total_extra * BASE_BPP[i] * factor,
            "psnr-rgb": BASE_PSNR[i] + offset + gain,
            "ms-ssim-rgb": 1 - (1 - BASE_SSIM[i]) * (1.1 - 0.04 * k),
        }
        rows.append(row)
    return rows


def write_run(
    root: Path,
    dataset: str,
    name: str,
    rows: list[dict[str, Any]],
    *,
    sample_set: Sequence[str],
    rates: Sequence[Any] = RATES,
    family: str = "SBAR",
    shard: str | None = None,
    tasks: dict[str, dict[str, Any]] | None = None,
    task_results: dict[str, list[float]] | None = None,
    weights: list[dict[str, Any]] | None = None,
) -> Path:
    """Rows log + results JSON of one (dataset, method) as ``bench.running.app.run_job`` writes them."""
    rel = f"{dataset}/{name}/cafe0123/rows.jsonl"
    RowLog(root / rel).append(rows)
    table = aggregate(pd.DataFrame(rows), list(rates))
    ok = {(r["sample"], str(r["rate"])) for r in rows if not r.get("error")}
    failures = [{k: r[k] for k in ("sample", "rate", "error")} for r in rows if r.get("error")]
    missing = len(sample_set) * len(rates) - len(ok & {(s, str(r)) for s in sample_set for r in rates})
    contents = sorted((s, content(s)) for s in sample_set)
    meta = {
        "bpp_source": "bitstream",
        "family": family,
        "method": name,
        "dataset": dataset,
        "samples": len(sample_set),
        "sample_set": {
            "n": len(sample_set),
            "digest": json_sha256([contents, {}]),
            "labels": {},
            "contents": dict(contents),
        },
        "complete": missing == 0 and not failures,
        "missing_rows": missing,
        "shard": shard,
        "failures": failures,
        "tasks": tasks or {},
        "config_hash": f"cfg-{name}",
        "rate_weights": {str(r): "" for r in rates},
        "weights": weights or [],
        "rows": rel,
        "provenance": {"git": {"commit": "abc0123456" + "0" * 30, "dirty": False}, "versions": {"numpy": "1"}},
    }
    doc = compressai_json(name, f"{name} method", table, meta)
    doc["results"].update(task_results or {})
    path = root / dataset / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def by_hand(rows: list[dict[str, Any]], samples: Sequence[str], rates: Sequence[Any] = RATES) -> dict[str, list]:
    """Means over ``samples`` per rate point, written out: bpp, bpp_total and MS-SSIM over every row, PSNR over the
    rows that are not lossless (inf), as the runner's rule says."""
    out: dict[str, list] = {"bpp": [], "bpp_total": [], "psnr-rgb": [], "ms-ssim-rgb": []}
    for rate in rates:
        here = [r for r in rows if r["rate"] == rate and r["sample"] in samples and not r.get("error")]
        for key in ("bpp", "bpp_total", "ms-ssim-rgb"):
            out[key].append(math.fsum(r[key] for r in here) / len(here))
        finite = [r["psnr-rgb"] for r in here if math.isfinite(r["psnr-rgb"])]
        out["psnr-rgb"].append(math.fsum(finite) / len(finite))
    return out
