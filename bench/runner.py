"""One sweep: every sample of a dataset through one method at every rate point.

Encode once per (sample, rate); the human target decodes what it is charged
for and is scored with PSNR and MS-SSIM. Samples run in worker processes
(codecs that do not use torch) and their rows are appended to the store as
each sample finishes, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from bench import metrics as M
from bench.datasets.base import ImageDataset, Sample
from bench.methods.base import HUMAN, Bitstream, Method
from bench.store import RunStore

log = logging.getLogger(__name__)

#: metric name -> factory that takes the original image and returns a scorer of
#: reconstructions (MS-SSIM caches the original's terms across the rate sweep)
METRICS: dict[str, Callable[[np.ndarray], Callable[[np.ndarray], float]]] = {
    "psnr-rgb": lambda original: lambda decoded: M.psnr(decoded, original),
    "ms-ssim-rgb": M.MSSSIM,
}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def measure_sample(
    method: Method, dataset: ImageDataset, sample: Sample, rates: Sequence[Any], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows for one sample at the given rates; failures become rows with ``error``."""
    base = {"sample": sample.id}
    try:
        image = dataset.load(sample)
    except Exception as exc:  # noqa: BLE001 - any unreadable input fails only its sample
        return [{**base, "rate": rate, "error": _error_text(exc)} for rate in rates]
    height, width = image.shape[:2]
    scorers: dict[str, Callable[[np.ndarray], float]] = {}
    unscorable: dict[str, str] = {}
    for name in metrics:
        try:
            scorers[name] = METRICS[name](image)
        except ValueError as exc:  # e.g. MS-SSIM of an image under 161 px
            unscorable[name] = f"{name}: {exc}"
    rows = []
    for rate in rates:
        row: dict[str, Any] = {**base, "rate": rate, "height": height, "width": width, "error": None}
        try:
            start = time.perf_counter()
            written = method.encode(image, rate)
            row["encoding_time"] = time.perf_counter() - start
            # The decoder gets the bytes and nothing else the encoder kept.
            received = Bitstream(dict(written.streams), height=written.height, width=written.width)
            charged = method.streams_for(HUMAN, received)
            row["bytes"] = received.num_bytes(charged)
            row["bytes_by_stream"] = {name: len(data) for name, data in received.streams.items()}
            row["bpp"] = M.bits_per_pixel(row["bytes"], height, width)
            start = time.perf_counter()
            decoded = method.decode(received, HUMAN)
            row["decoding_time"] = time.perf_counter() - start
            if decoded.shape != image.shape or decoded.dtype != np.uint8:
                raise ValueError(f"decoder returned {decoded.shape} {decoded.dtype}, expected {image.shape} uint8")
            for name, score in scorers.items():
                row[name] = score(decoded)
            for name in unscorable:
                row[name] = math.nan
            if unscorable:
                row["notes"] = "; ".join(unscorable.values())
        except Exception as exc:  # noqa: BLE001 - a codec failing on one sample fails that sample
            row["error"] = _error_text(exc)
        rows.append(row)
    return rows


# Worker processes receive the job once, at start, rather than with every sample.
_JOB: tuple[Method, ImageDataset, list[Any], list[str]] | None = None


def _init_worker(method: Method, dataset: ImageDataset, metrics: list[str]) -> None:
    global _JOB
    _JOB = (method, dataset, [], metrics)
    try:  # each process is one worker: OpenCV's own threads would fight the others
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _run_in_worker(sample: Sample, rates: list[Any]) -> list[dict[str, Any]]:
    assert _JOB is not None
    method, dataset, _, metrics = _JOB
    return measure_sample(method, dataset, sample, rates, metrics)


def run_sweep(
    method: Method,
    dataset: ImageDataset,
    store: RunStore,
    metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb"),
    workers: int = 1,
    resume: bool = True,
    progress: bool = True,
    samples: list[Sample] | None = None,
) -> dict[str, int]:
    """Measure what is not yet in ``store``; returns counts of work done and skipped."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    samples = samples if samples is not None else dataset.samples()
    done = store.done_keys() if resume else set()
    todo: list[tuple[Sample, list[Any]]] = []
    for sample in samples:
        rates = [r for r in method.rates if (sample.id, str(r)) not in done]
        if rates:
            todo.append((sample, rates))
    skipped = len(samples) * len(method.rates) - sum(len(r) for _, r in todo)
    stats = {"samples": len(samples), "measured": 0, "skipped": skipped, "failed": 0}
    if not todo:
        log.info("nothing to do: all %d rows are in %s", skipped, store.rows_path)
        return stats
    if skipped:
        log.info("resuming: %d rows already in %s", skipped, store.rows_path)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"{method.name} on {dataset.name}", unit="image", disable=not progress)

    def record(rows: list[dict[str, Any]]) -> None:
        store.append_rows(rows)
        stats["measured"] += len(rows)
        stats["failed"] += sum(1 for r in rows if r.get("error"))
        for r in rows:
            if r.get("error"):
                log.warning("%s at rate %s failed: %s", r["sample"], r["rate"], r["error"])
        bar.update(1)

    n_workers = 1 if method.uses_torch else max(1, min(workers, len(todo)))
    try:
        if n_workers == 1:
            for sample, rates in todo:
                record(measure_sample(method, dataset, sample, rates, metrics))
        else:
            context = multiprocessing.get_context("fork")  # workers inherit imports: no start-up cost
            with ProcessPoolExecutor(
                n_workers, mp_context=context, initializer=_init_worker, initargs=(method, dataset, list(metrics))
            ) as pool:
                futures = [pool.submit(_run_in_worker, sample, rates) for sample, rates in todo]
                for future in as_completed(futures):
                    record(future.result())
    finally:
        bar.close()
    return stats
