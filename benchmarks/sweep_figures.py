"""Sweep figures: wall time and peak RSS of a codec sweep, adding a task to it, resuming it.

    python benchmarks/sweep_figures.py KODAK_DIR [--rates 8] [--task NAME] [--limit N]

Each figure is one ``python -m bench run`` per codec in a fresh process; peak RSS is
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that process (its largest
process: the job or one of its workers). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODECS = {
    "jpeg": lambda n: [round(5 + i * 90 / (n - 1)) for i in range(n)],
    "webp": lambda n: [round(5 + i * 90 / (n - 1)) for i in range(n)],
    "jpeg2000": lambda n: [round(24 + i * 18 / (n - 1)) for i in range(n)],
}


def _inner(argv: list[str]) -> None:
    """Run the sweeps in ``argv`` (one JSON list of arg lists) and report time and peak RSS."""
    start = time.perf_counter()
    for args in json.loads(argv[0]):
        subprocess.run([sys.executable, "-m", "bench", *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"wall_s": wall, "peak_rss_mib": rss}))


def measure(runs: list[list[str]]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--inner", json.dumps(runs)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kodak", type=Path, help="folder of the Kodak PNGs")
    parser.add_argument("--rates", type=int, default=8)
    parser.add_argument(
        "--task", default="none", help="task added to the finished sweep, e.g. mobilenet-v1 (needs its weights)"
    )
    parser.add_argument("--limit", type=int, default=None)
    ns = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sweep-figures-"))

    def sweep(results: Path, workers: int, *extra: str) -> list[list[str]]:
        runs = []
        for codec, rates in CODECS.items():
            args = [f"method={codec}", "dataset=folder", f"dataset.root={ns.kodak.resolve()}"]
            args += [f"method.rates=[{','.join(map(str, rates(ns.rates)))}]", f"workers={workers}"]
            args += [f"results_dir={results}", "progress=false", *extra]
            if ns.limit:
                args.append(f"limit={ns.limit}")
            runs.append(["run", *args])
        return runs

    rows = []
    for workers in (1, 2):
        rows.append((f"sweep, workers={workers}", measure(sweep(work / f"w{workers}", workers))))
    rows.append(("resume a finished sweep (workers=2)", measure(sweep(work / "w2", 2))))
    cache = work / "cache"
    rows.append(("sweep with cache_dir, workers=2", measure(sweep(work / "c", 2, f"cache_dir={cache}"))))
    if ns.task != "none":
        rows.append((f"add task={ns.task}, no cache", measure(sweep(work / "w2", 2, f"task={ns.task}"))))
        extra = (f"task={ns.task}", f"cache_dir={cache}")
        rows.append((f"add task={ns.task}, cached bitstreams", measure(sweep(work / "c", 2, *extra))))
    n = ns.limit or len(list(ns.kodak.glob("*.png")))
    print(f"{n} images x {len(CODECS)} codecs ({', '.join(CODECS)}) x {ns.rates} rates; results under {work}\n")
    print("| run | wall s | peak RSS MiB |\n|---|---:|---:|")
    for name, m in rows:
        print(f"| {name} | {m['wall_s']:.1f} | {m['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        _inner(sys.argv[2:])
    else:
        main()
