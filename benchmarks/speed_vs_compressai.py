"""Wall time of the harness vs CompressAI's own tools on the same work.

Both run as whole processes (start-up included) over a folder of images: JPEG
or WebP at the same qualities with PSNR and MS-SSIM against
``python -m compressai.utils.bench``, or the project's learned
bmshj2018-hyperprior at one quality against ``python -m
compressai.utils.eval_model checkpoint`` on the same weights file. The script
prints both times, their ratio and the largest relative difference of the
averaged numbers.

    python benchmarks/speed_vs_compressai.py [<kodak-folder>] [--qualities 10,20,...,80] [--jobs 2]
    python benchmarks/speed_vs_compressai.py <kodak-folder> --codec bmshj2018-hyperprior-ours [--quality 1]

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


def conventional(images: Path, work: Path, codec: str, qualities: str, jobs: int) -> tuple[tuple, tuple, dict]:
    """``compressai.utils.bench <codec>`` against ``bench run method=<codec>``: the same qualities, PSNR, MS-SSIM."""
    t_ref, out = timed(
        [sys.executable, "-m", "compressai.utils.bench", codec, str(images), "-q", qualities, "-j", str(jobs)], work
    )
    ref = json.loads(out[out.index("{") :])["results"]
    t_ours, ours = harness(images, work, codec, [f"method.rates=[{qualities}]", f"workers={jobs}"])
    return (f"compressai.utils.bench {codec}", t_ref), ("python -m bench run", t_ours), {"ref": ref, "ours": ours}


def learned(images: Path, work: Path, quality: int, jobs: int) -> tuple[tuple, tuple, dict]:
    """``compressai.utils.eval_model checkpoint`` on the project's own bmshj2018-hyperprior weights against
    ``bench run method=bmshj2018-hyperprior-ours`` on the same file (real entropy coding in both)."""
    from bench.resolvers import project_checkpoints

    weights = project_checkpoints() / "bmshj2018-hyperprior-ours" / f"bmshj2018-hyperprior-mse-q{quality}.pth"
    t_ref, out = timed(
        [sys.executable, "-m", "compressai.utils.eval_model", "checkpoint", str(images),
         "-a", "bmshj2018-hyperprior", "-p", str(weights)],
        work,
    )  # fmt: skip
    ref = json.loads(out[out.index("{") :])["results"]
    t_ours, ours = harness(
        images, work, "bmshj2018-hyperprior-ours", [f"method.rates=[{quality}]", f"workers={jobs}", "device=cpu"]
    )
    return ("compressai.utils.eval_model", t_ref), ("python -m bench run", t_ours), {"ref": ref, "ours": ours}


def harness(images: Path, work: Path, method: str, overrides: list[str]) -> tuple[float, dict]:
    out_dir = work / f"out-{method}"
    t, _ = timed(
        [sys.executable, "-m", "bench", "run", f"method={method}", "dataset=folder", f"dataset.root={images}",
         *overrides, f"results_dir={out_dir}", "progress=false"],
        work,
    )  # fmt: skip
    return t, json.loads(next(out_dir.glob(f"*/{method}.json")).read_text())["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="?", help="folder of images (default: scikit-image samples)")
    parser.add_argument("--codec", default="jpeg", choices=["jpeg", "webp", "bmshj2018-hyperprior-ours"])
    parser.add_argument("--qualities", default="10,20,30,40,50,60,70,80", help="JPEG/WebP qualities")
    parser.add_argument("--quality", type=int, default=1, help="the learned codec's quality")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = args.images.resolve() if args.images else write_sample_images(work / "samples")
        if args.codec == "bmshj2018-hyperprior-ours":
            (ref_name, t_ref), (ours_name, t_ours), numbers = learned(images, work, args.quality, args.jobs)
            keys = ("psnr-rgb", "ms-ssim-rgb")  # eval_model's bpp counts the strings only, ours the header too
        else:
            (ref_name, t_ref), (ours_name, t_ours), numbers = conventional(
                images, work, args.codec, args.qualities, args.jobs
            )
            keys = ("bpp", "psnr-rgb", "ms-ssim-rgb")
    print(f"{ref_name + ':':32s} {t_ref:7.2f} s")
    print(f"{ours_name + ':':32s} {t_ours:7.2f} s   ratio {t_ours / t_ref:.3f}")
    for key in keys:
        worst = max(abs(a - b) / abs(a) for a, b in zip(numbers["ref"][key], numbers["ours"][key]))
        print(f"max relative difference {key:12s} {worst:.2e}")
    if "bpp" not in keys:
        ref_bpp, ours_bpp = numbers["ref"]["bpp"][0], numbers["ours"]["bpp"][0]
        print(f"bpp: eval_model {ref_bpp:.6f} (strings), ours {ours_bpp:.6f} (strings + header)")


if __name__ == "__main__":
    main()
