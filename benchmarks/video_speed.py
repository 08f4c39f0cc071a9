"""Frames per second of an x264 sweep on UCF101 clips, as the harness runs it (worker processes).

Runs ``method=h264`` (its six CRFs by default) over the UCF101 videos under
``--ucf101`` with the harness's sweep (``run_sweep``: decoding the sources,
encoding and decoding in forked worker processes, PSNR / PSNR-YUV / MS-SSIM),
once per ``--workers`` value, and prints the wall time and three rates:

- sweep frames/s: frames coded (clips x frames x rates) / wall time, all included;
- encode frames/s and decode frames/s: frames / the encode (decode) time the
  rows record, summed over rows (per process, so comparable across workers).

    python benchmarks/video_speed.py [--ucf101 DIR] [--frames N|all] [--rates 43,33,23] [--workers 1,2]

``--ucf101`` defaults to ``$HMC_BENCH_ASSETS/ucf101`` (4 clips of the test split).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    assets = os.environ.get("HMC_BENCH_ASSETS")
    parser.add_argument("--ucf101", type=Path, default=Path(assets) / "ucf101" if assets else None)
    parser.add_argument("--frames", default="all", help="frames per clip (the dataset sampler), or 'all'")
    parser.add_argument("--rates", default=None, help="CRFs, comma-separated (default: the h264 config's)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    args = parser.parse_args()
    if args.ucf101 is None:
        sys.exit("no UCF101 folder: pass --ucf101 DIR or set HMC_BENCH_ASSETS")
    logging.basicConfig(level=logging.WARNING)

    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from bench.datasets.ucf101 import UCF101
    from bench.running.runner import run_sweep
    from bench.running.store import RunStore

    overrides = ["method=h264"] + ([f"method.rates=[{args.rates}]"] if args.rates else [])
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        method = instantiate(compose("config", overrides=overrides).method)
    frames = None if args.frames == "all" else int(args.frames)
    dataset = UCF101(args.ucf101, missing_videos="skip", frames=frames)
    samples = dataset.samples()
    print(f"{len(samples)} clips of {dataset.describe()}; x264 {method.description}, CRF {method.rates}")
    print(f"{'workers':>7} {'wall s':>8} {'frames':>7} {'sweep fps':>10} {'encode fps':>11} {'decode fps':>11}")
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(tmp, dataset.name, method.name, f"speed-{workers}")
            start = time.perf_counter()
            run_sweep(method, dataset, store, workers=workers, resume=False, progress=False, samples=samples)
            wall = time.perf_counter() - start
            rows = store.sample_table()
        failed = int(rows["error"].notna().sum()) if "error" in rows else 0
        if failed:
            sys.exit(f"{failed} rows failed: {rows[rows['error'].notna()]['error'].iloc[0]}")
        coded = float(rows["frames"].sum())
        enc, dec = coded / rows["encoding_time"].sum(), coded / rows["decoding_time"].sum()
        print(f"{workers:>7} {wall:>8.2f} {coded:>7.0f} {coded / wall:>10.1f} {enc:>11.1f} {dec:>11.1f}")
        assert math.isfinite(enc) and math.isfinite(dec)


if __name__ == "__main__":
    main()
