"""Wall time of the harness vs ``python -m compressai.utils.bench`` on the same work.

Both run as whole processes (start-up included) over a folder of images with
the same JPEG qualities, PSNR and MS-SSIM; the script prints both times, their
ratio and the largest relative difference of the averaged numbers.

    python benchmarks/speed_vs_compressai.py [<kodak-folder>] [--qualities 10,20,...,80] [--jobs 2]

With no folder it uses scikit-image's sample photographs (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return elapsed, res.stdout


def write_sample_images(folder: Path) -> Path:
    from PIL import Image

    from bench.datasets.samples import PackageSamples

    folder.mkdir(parents=True)
    dataset = PackageSamples()
    for sample in dataset.samples():
        Image.fromarray(dataset.load(sample)).save(folder / f"{sample.id}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="?", help="folder of images (default: scikit-image samples)")
    parser.add_argument("--codec", default="jpeg", choices=["jpeg", "webp"])
    parser.add_argument("--qualities", default="10,20,30,40,50,60,70,80")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = args.images.resolve() if args.images else write_sample_images(work / "samples")
        t_ref, out = timed(
            [
                sys.executable,
                "-m",
                "compressai.utils.bench",
                args.codec,
                str(images),
                "-q",
                args.qualities,
                "-j",
                str(args.jobs),
            ],
            work,
        )
        ref = json.loads(out[out.index("{") :])["results"]
        t_ours, _ = timed(
            [
                sys.executable,
                "-m",
                "bench",
                "run",
                f"method={args.codec}",
                "dataset=folder",
                f"dataset.root={images}",
                f"method.rates=[{args.qualities}]",
                f"workers={args.jobs}",
                f"results_dir={work / 'out'}",
                "progress=false",
            ],
            work,
        )
        ours = json.loads(next((work / "out").glob(f"*/{args.codec}.json")).read_text())["results"]
    print(f"compressai.utils.bench: {t_ref:7.2f} s")
    print(f"python -m bench run:    {t_ours:7.2f} s   ratio {t_ours / t_ref:.3f}")
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb"):
        worst = max(abs(a - b) / abs(a) for a, b in zip(ref[key], ours[key]))
        print(f"max relative difference {key:12s} {worst:.2e}")


if __name__ == "__main__":
    main()
