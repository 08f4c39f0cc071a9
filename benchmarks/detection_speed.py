"""Images per second of the COCO detection pipeline (image load + predict) on the CPU.

Runs a task config (YOLOX-Nano by default) over the COCO images of the shared
assets, or any COCO-layout folder, after one warm-up image, and prints the
throughput, the time split (load / preprocess / network / decode + NMS) and
the AP on the folder's annotations.

    python benchmarks/detection_speed.py [--coco DIR] [--annotations FILE] [--task yolox-nano] [--limit N]
        [--threads N] [--repeat R]

``--coco`` defaults to ``$HMC_BENCH_ASSETS/coco`` (158 val2017 images); the
weights are looked up under ``$HMC_BENCH_WEIGHTS`` (default: ``$HMC_BENCH_ASSETS/weights``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def build_task(name: str, threads: int | None):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    overrides = [f"task={name}", "task.device=cpu"]
    if threads:
        overrides.append(f"task.threads={threads}")
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return instantiate(compose("config", overrides=overrides).task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    assets = os.environ.get("HMC_BENCH_ASSETS")
    parser.add_argument("--coco", type=Path, default=Path(assets) / "coco" if assets else None)
    parser.add_argument("--images", default="val2017")
    parser.add_argument("--annotations", default=None, help="relative to --coco (default: the assets' subset file)")
    parser.add_argument("--task", default="yolox-nano", help="a task config (yolox-nano, nanodet-m, ...)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the median is reported")
    args = parser.parse_args()
    if args.coco is None:
        sys.exit("no COCO folder: pass --coco DIR or set HMC_BENCH_ASSETS")
    if assets and "HMC_BENCH_WEIGHTS" not in os.environ:
        os.environ["HMC_BENCH_WEIGHTS"] = str(Path(assets) / "weights")
    annotations = args.annotations
    if annotations is None:
        subset = args.coco / "annotations" / "instances_val2017_subset158.json"
        annotations = str(subset.relative_to(args.coco)) if subset.is_file() else "annotations/instances_val2017.json"

    from bench.datasets.coco import CocoDetection

    dataset = CocoDetection(args.coco, images=args.images, annotations=annotations, limit=args.limit)
    samples = dataset.samples()
    task = build_task(args.task, args.threads)
    why = task.unavailable_reason()
    if why:
        sys.exit(f"task {args.task} cannot run: {why}")
    task.predict([dataset.load(samples[0])])  # session start-up is not throughput

    passes, predictions = [], {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        for sample in samples:
            predictions[sample.id] = task.predict([dataset.load(sample)])[0]
        passes.append(time.perf_counter() - start)
    elapsed = statistics.median(passes)

    # where the time goes (ONNX detectors only): one more pass, stage by stage
    split = {}
    if hasattr(task, "preprocess"):
        from bench.tasks.networks.detectors import postprocess

        session = task.session()
        name = session.get_inputs()[0].name
        split = dict.fromkeys(("load", "preprocess", "network", "decode+nms"), 0.0)
        for sample in samples:
            t0 = time.perf_counter()
            image = dataset.load(sample)
            t1 = time.perf_counter()
            x, _ = task.preprocess(image)
            t2 = time.perf_counter()
            raw = session.run(None, {name: x[None]})
            t3 = time.perf_counter()
            boxes, scores = task.decode([r[0] if r.ndim == 3 else r for r in raw])
            postprocess(boxes, scores, task.score_threshold, task.nms_iou, task.max_detections, task.multi_label)
            t4 = time.perf_counter()
            for key, dt in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                split[key] += dt

    scores = task.evaluate(predictions, dataset.targets("detection", samples))
    print(f"task {task.describe()}; {len(samples)} images from {dataset.describe()}; {os.cpu_count()} CPUs")
    print(
        f"load + predict: {len(samples) / elapsed:.1f} images/s ({1000 * elapsed / len(samples):.1f} ms/image, "
        f"median of {len(passes)} passes: {', '.join(f'{p:.2f}' for p in passes)} s)"
    )
    if split:
        print("per image: " + ", ".join(f"{k} {1000 * v / len(samples):.1f} ms" for k, v in split.items()))
    print(f"AP {scores['mAP']:.4f}  AP50 {scores['mAP50']:.4f}  AP75 {scores['mAP75']:.4f}")


if __name__ == "__main__":
    main()
