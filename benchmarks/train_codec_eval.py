"""Our trained bmshj2018-hyperprior on Kodak vs CompressAI's published model and JPEG.

    python benchmarks/train_codec_eval.py [--kodak DIR] [--checkpoints DIR] [--out DIR]

1. Runs the harness (``python -m bench run method=bmshj2018-hyperprior-ours dataset=kodak``): real entropy
   coding of the 24 Kodak images with every exported quality found in ``--checkpoints``.
2. Compares with CompressAI's published Kodak results (``<assets>/reference_rd/compressai_kodak``) and with
   the project's JPEG results (``results/kodak/jpeg.json``):
   - per trained point: the published curve's PSNR at our bpp, and the rate it needs for our PSNR (PCHIP
     on log-bpp, inside its range only) -- the honest figure while fewer than four points exist;
   - with four or more points: BD-rate (PSNR) against each (``bench.analysis.bdrate``).
3. Draws the RD plot with ``python -m bench report`` (references as thin curves).

Defaults read ``HMC_BENCH_ASSETS``. Writes ``<out>/train_codec_eval.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from bench.analysis.bdrate import BDError, bd_rate
from bench.analysis.rdcurves import RDCurve, load_compressai_json

REPO = Path(__file__).resolve().parents[1]
METHOD = "bmshj2018-hyperprior-ours"
PUBLISHED = "compressai-bmshj2018-hyperprior_mse_cpu.json"
METRIC = "psnr-rgb"
MIN_BD_POINTS = 4


def _assets(sub: str) -> Path | None:
    root = os.environ.get("HMC_BENCH_ASSETS")
    return Path(root) / sub if root else None


def trained_qualities(folder: Path) -> list[int]:
    """Qualities with an exported weights file (``bmshj2018-hyperprior-mse-q<q>.pth``) in ``folder``."""
    found = (re.fullmatch(r"bmshj2018-hyperprior-mse-q(\d+)\.pth", p.name) for p in folder.glob("*.pth"))
    return sorted(int(m.group(1)) for m in found if m)


def run_harness(kodak: Path, checkpoints: Path, qualities: list[int], results: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        f"method={METHOD}",
        "dataset=kodak",
        f"dataset.root={kodak}",
        f"method.checkpoints={checkpoints}",
        f"method.rates=[{','.join(map(str, qualities))}]",
        f"results_dir={results}",
        "workers=1",
        "progress=false",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return results / "kodak" / f"{METHOD}.json"


def _sorted(curve: RDCurve) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(curve.rates)
    return np.log10(curve.rates[order]), curve.values[order]


def point_vs_curve(bpp: float, psnr: float, curve: RDCurve) -> dict[str, float | None]:
    """The curve's PSNR at ``bpp`` and its rate at ``psnr`` (PCHIP on log-bpp); None outside its range."""
    log_r, q = _sorted(curve)
    out: dict[str, float | None] = {"psnr_at_our_bpp": None, "delta_psnr_db": None, "rate_saving_pct": None}
    if log_r[0] <= np.log10(bpp) <= log_r[-1]:
        ref_q = float(PchipInterpolator(log_r, q)(np.log10(bpp)))
        out["psnr_at_our_bpp"], out["delta_psnr_db"] = ref_q, psnr - ref_q
    if q[0] <= psnr <= q[-1] and np.all(np.diff(q) > 0):
        ref_bpp = 10 ** float(PchipInterpolator(q, log_r)(psnr))
        out["rate_saving_pct"] = 100.0 * (bpp / ref_bpp - 1.0)  # negative = fewer bits than the reference
    return out


def bd_over_overlap(anchor: RDCurve, ours: RDCurve) -> dict | str:
    """BD-rate (PSNR) with its PSNR interval. Where the curves overlap on less than ``bench.analysis.bdrate``'s default
    share of their joint range (a short CPU-trained curve against a full published one), the figure is still
    computed over the overlap and marked ``partial``: it speaks for that interval only."""
    try:
        result, partial = bd_rate(anchor, ours), False
    except BDError as exc:
        if "overlap covers" not in str(exc):
            return f"not computed: {exc}"
        try:
            result, partial = bd_rate(anchor, ours, min_overlap=0.0), True
        except BDError as exc2:
            return f"not computed: {exc2}"
    low, high = result.interval
    return {"bd_rate_pct": result.value, "psnr_interval": [low, high], "overlap": result.overlap, "partial": partial}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kodak", type=Path, default=_assets("kodak"), help="Kodak folder (default $HMC_BENCH_ASSETS/kodak)"
    )
    parser.add_argument(
        "--checkpoints", type=Path, default=REPO / "checkpoints" / METHOD, help="folder of exported .pth + sidecars"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=_assets("reference_rd/compressai_kodak"),
        help="CompressAI's published Kodak results folder (default $HMC_BENCH_ASSETS/reference_rd/compressai_kodak)",
    )
    parser.add_argument("--jpeg", type=Path, default=REPO / "results" / "kodak" / "jpeg.json")
    parser.add_argument("--results", type=Path, default=REPO / "bench-results" / "train-codec")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "train-codec")
    args = parser.parse_args(argv)
    for name in ("kodak", "reference"):
        if getattr(args, name) is None or not getattr(args, name).is_dir():
            parser.error(f"--{name} folder not found ({getattr(args, name)}); set HMC_BENCH_ASSETS or pass --{name}")
    qualities = trained_qualities(args.checkpoints)
    if not qualities:
        parser.error(f"no exported weights (bmshj2018-hyperprior-mse-q<q>.pth) in {args.checkpoints}")

    ours_json = run_harness(args.kodak, args.checkpoints.resolve(), qualities, args.results.resolve())
    ours = load_compressai_json(ours_json, METRIC, name="ours")
    published = load_compressai_json(args.reference / PUBLISHED, METRIC, name="CompressAI bmshj2018-hyperprior")
    jpeg = load_compressai_json(args.jpeg, METRIC, name="JPEG")

    rows = []
    for q, bpp, psnr in zip(qualities, ours.rates, ours.values):
        side = json.loads((args.checkpoints / f"bmshj2018-hyperprior-mse-q{q}.json").read_text())
        rows.append(
            {
                "quality": q,
                "lmbda": side["lmbda"],
                "steps": side.get("total_steps", side["steps"]),  # with the runs it was fine-tuned from
                "bpp": float(bpp),
                "psnr": float(psnr),
                "vs_published": point_vs_curve(float(bpp), float(psnr), published),
                "vs_jpeg": point_vs_curve(float(bpp), float(psnr), jpeg),
            }
        )
    summary: dict = {"points": rows, "bd_rate": {}}
    for anchor in (published, jpeg):
        if len(ours) < MIN_BD_POINTS:
            summary["bd_rate"][anchor.name] = f"not computed: {len(ours)} trained point(s), BD needs {MIN_BD_POINTS}"
            continue
        summary["bd_rate"][anchor.name] = bd_over_overlap(anchor, ours)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_codec_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "report",
            "--results",
            str(args.results.resolve()),
            "--results",
            str(args.jpeg.parent.parent),
            "--dataset",
            "kodak",
            "--anchor",
            "jpeg",
            "--out",
            str(args.out.resolve()),
            "--reference",
            f"kodak={args.reference / PUBLISHED}",
            "--reference",
            f"kodak={args.reference / 'paper-bmshj2018-hyperprior.json'}",
        ],
        check=True,
        cwd=REPO,
    )

    def fmt(v: float | None, spec: str) -> str:
        if v is None:
            return "outside its range"
        return format(v / 100, spec) if spec.endswith("%") else format(v, spec)

    print(
        "| q | λ | steps (with its init) | bpp | PSNR | published PSNR at that bpp | Δ rate vs published "
        "| JPEG PSNR at that bpp | Δ rate vs JPEG |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, j = r["vs_published"], r["vs_jpeg"]
        print(
            f"| {r['quality']} | {r['lmbda']} | {r['steps']} | {r['bpp']:.4f} | {r['psnr']:.2f} | "
            f"{fmt(p['psnr_at_our_bpp'], '.2f')} | {fmt(p['rate_saving_pct'], '+.1%')} | "
            f"{fmt(j['psnr_at_our_bpp'], '.2f')} | {fmt(j['rate_saving_pct'], '+.1%')} |"
        )
    for name, v in summary["bd_rate"].items():
        if isinstance(v, str):
            print(f"BD-rate (PSNR) vs {name}: {v}")
            continue
        low, high = v["psnr_interval"]
        scope = f"over the overlap only ({v['overlap']:.0%} of the joint range)" if v["partial"] else "over the overlap"
        print(f"BD-rate (PSNR) vs {name}: {v['bd_rate_pct']:+.2f}% on {low:.2f}-{high:.2f} dB, {scope}")
    print(f"plots and tables: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
