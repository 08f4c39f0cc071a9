"""``python -m bench report``: a first RD table and RD plots from a results folder."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from bench.metrics import ms_ssim_db
from bench.store import atomic_write_text, load_results

AXES = {"psnr-rgb": "PSNR RGB [dB]", "ms-ssim-rgb": "MS-SSIM RGB [dB]"}


def rd_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Long table: one row per (method, rate point)."""
    frames = []
    for stem, doc in results.items():
        res = doc.get("results", {})
        n = len(res.get("bpp", []))
        if not n:
            continue
        frame = pd.DataFrame({k: v for k, v in res.items() if isinstance(v, list) and len(v) == n})
        frame.insert(0, "method", doc.get("name", stem))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_rd(table: pd.DataFrame, metric: str, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, group in table.groupby("method", sort=True):
        group = group.sort_values("bpp")
        values = group[metric]
        if metric == "ms-ssim-rgb":
            values = values.map(lambda v: ms_ssim_db(v) if v is not None and not math.isnan(v) else math.nan)
        ax.plot(group["bpp"], values, marker="o", markersize=3, label=method)
    ax.set_xlabel("bpp")
    ax.set_ylabel(AXES.get(metric, metric))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report", description="RD table and plots")
    parser.add_argument("--results", default=os.environ.get("HMC_BENCH_RESULTS", "bench-results"))
    parser.add_argument("--dataset", default=None, help="one dataset (default: every dataset in --results)")
    parser.add_argument("--out", default="reports", help="folder for plots and tables")
    args = parser.parse_args(argv)
    root = Path(args.results)
    datasets = (
        [args.dataset]
        if args.dataset
        else sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )
    if not datasets:
        print(f"error: no results under {root}; run `python -m bench run` first", flush=True)
        return 2
    for dataset in datasets:
        table = rd_table(load_results(root, dataset))
        if table.empty:
            print(f"{dataset}: no results")
            continue
        out = Path(args.out) / dataset
        cols = [c for c in ("method", "rate", "bpp", "psnr-rgb", "ms-ssim-rgb") if c in table]
        text = table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
        print(f"== {dataset} ==\n{text}")
        atomic_write_text(out / "rd-table.csv", table.to_csv(index=False))
        for metric in ("psnr-rgb", "ms-ssim-rgb"):
            if metric in table and table[metric].notna().any():
                path = plot_rd(table, metric, f"{dataset}: {AXES[metric]}", out / f"rd-{metric}.png")
                print(f"plot: {path}")
    return 0
