"""One sweep: every sample of a dataset through one method at every rate point.

Encode once per (sample, rate); the human target decodes what it is charged
for and is scored with PSNR and MS-SSIM. Samples run in worker processes
(codecs that do not use torch) and their rows are appended to the store as
each sample finishes, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets.base import ImageDataset, Sample
from bench.io.digests import array_sha256
from bench.io.files import atomic_write_bytes
from bench.methods.base import HUMAN, Bitstream, HeadPrediction, Method
from bench.metrics import registry
from bench.metrics import video as VM
from bench.metrics.complexity import Peak, peak_memory
from bench.metrics.registry import CLIP, IMAGE
from bench.running.keys import RowStamp
from bench.running.store import RowLog, RunStore
from bench.tasks.base import Task

log = logging.getLogger(__name__)

#: the rate label of predictions on the uncompressed input
UNCOMPRESSED = "uncompressed"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class BitstreamCache:
    """Encoded bitstreams on disk, content-addressed.

    An entry lives at ``<root>/<aa>/<sha256>`` where the digest covers the
    method key (its config, the harness's measurement version, the codec
    versions, device and precision; built by the caller), the SHA-256 of the
    rate point's weight files (``weights``: rate -> digest), the SHA-256 of the
    image's pixels and the rate point, so an entry can only be found by the
    exact encode that made it: a stale entry, or one written by other weights,
    is never decoded, only left behind. A file is a JSON header line (stream
    names and lengths, size, encode time) then the raw stream bytes; it is
    written atomically, so concurrent writers are safe.
    """

    def __init__(self, root: str | Path, method_key: str, weights: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.method_key = method_key
        self.weights = dict(weights or {})

    @staticmethod
    def image_digest(image: np.ndarray) -> str:
        return array_sha256(image)

    def path(self, image_digest: str, rate: Any) -> Path:
        key = json.dumps([self.method_key, self.weights.get(str(rate), ""), image_digest, str(rate)])
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / digest

    def load(self, image_digest: str, rate: Any) -> tuple[Bitstream, float] | None:
        """The cached bitstream and the time its encode took, or None."""
        try:
            data = self.path(image_digest, rate).read_bytes()
            end = data.index(b"\n")
            header = json.loads(data[:end])
            streams, offset = {}, end + 1
            for name, length in header["streams"]:
                streams[name] = data[offset : offset + length]
                offset += length
            if offset != len(data):
                return None  # not a file this cache wrote
            bitstream = Bitstream(streams, height=header["height"], width=header["width"], info=header["info"])
            return bitstream, float(header["encoding_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, image_digest: str, rate: Any, bitstream: Bitstream, encoding_time: float) -> None:
        try:
            header = json.dumps(
                {
                    "streams": [[n, len(b)] for n, b in bitstream.streams.items()],
                    "height": bitstream.height,
                    "width": bitstream.width,
                    "info": bitstream.info,
                    "encoding_time": encoding_time,
                }
            )
        except TypeError:
            return  # info that JSON cannot hold: not cached, encoded again next time
        data = header.encode() + b"\n" + b"".join(bytes(b) for b in bitstream.streams.values())
        atomic_write_bytes(self.path(image_digest, rate), data)


@dataclass
class TaskJob:
    """What one sample still needs from one task: predictions at ``rates``, and the uncompressed one."""

    task: Task
    rates: list[Any] = field(default_factory=list)
    need_reference: bool = False


@dataclass
class SampleResult:
    """Rows one sample produced: human metrics, and per task predictions and the uncompressed reference."""

    human: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    references: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def count(self) -> tuple[int, int]:
        rows = [*self.human, *(r for rs in self.tasks.values() for r in rs)]
        return len(rows), sum(1 for r in rows if r.get("error"))


def _is_out_of_memory(exc: BaseException) -> bool:
    """A GPU (or allocator) out-of-memory error, by type name or message, without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _predict_batch(task: Task, inputs: list[Any]) -> tuple[list[Any], list[dict[str, int]]]:
    """Predictions for ``inputs`` and the task's per-input counts; on out-of-memory, halve the batch and retry,
    down to one input."""
    try:
        predictions, counts = task.predict_with_counts(inputs)
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        if len(inputs) == 1:
            raise MemoryError(f"task {task.name} ran out of memory on a single input ({exc})") from exc
        half = len(inputs) // 2
        task.batch_size = max(1, half)  # later batches start at the size that fits
        log.warning("task %s ran out of memory on %d inputs; retrying in batches of %d", task.name, len(inputs), half)
        first, first_counts = _predict_batch(task, inputs[:half])
        rest, rest_counts = _predict_batch(task, inputs[half:])
        return first + rest, first_counts + rest_counts
    if len(predictions) != len(inputs):
        raise ValueError(f"task {task.name} returned {len(predictions)} predictions for {len(inputs)} inputs")
    return predictions, counts


def _predict_rows(task: Task, sample: Sample, items: list[tuple[Any, dict[str, Any], Any]]) -> list[dict[str, Any]]:
    """Run ``task`` over (rate, row, input) items in batches; a failing batch fails its rows.

    An input that is a :class:`HeadPrediction` (the method predicted itself) is
    recorded as the prediction as it is; the task network never sees it.
    """
    rows = []
    for _, row, x in items:
        if isinstance(x, HeadPrediction):
            row["prediction"] = x.value
            rows.append(row)
    items = [item for item in items if not isinstance(item[2], HeadPrediction)]
    start = 0
    while start < len(items):
        batch = items[start : start + max(1, task.batch_size)]
        start += len(batch)
        try:
            predictions, counts = _predict_batch(task, [x for _, _, x in batch])
        except Exception as exc:  # noqa: BLE001 - a task failing on one sample fails that sample
            predictions, counts = [None] * len(batch), [{}] * len(batch)
            for _, row, _ in batch:
                row["error"] = _error_text(exc)
        for (_, row, _), prediction, count in zip(batch, predictions, counts):
            row["prediction"] = prediction
            if count:
                row["counts"] = count
            rows.append(row)
    return rows


def stream_digests(bitstream: Bitstream) -> dict[str, str]:
    """SHA-256 of each stream's bytes: a conformance record of what was written."""
    return {name: hashlib.sha256(bytes(data)).hexdigest() for name, data in bitstream.streams.items()}


class TargetDecoder:
    """Decodes what each target receives from one bitstream: only its streams, once per stream set."""

    def __init__(self, method: Method, written: Bitstream):
        self.method = method
        self.written = written
        self.cache: dict[Any, tuple[Any, float, float | None]] = {}

    def _key(self, target: str) -> tuple[Any, list[str]]:
        charged = self.method.streams_for(target, self.written)
        return ((tuple(charged), target) if self.method.decodes_per_target else tuple(charged)), charged

    def for_target(self, target: str) -> tuple[Any, int, float]:
        """The decoded input of ``target``, the bytes it was charged, and the decode time."""
        key, charged = self._key(target)
        w = self.written
        received = Bitstream({n: w.streams[n] for n in charged}, height=w.height, width=w.width)
        if key not in self.cache:
            with peak_memory(method_device(self.method)) as peak:
                start = time.perf_counter()
                out = self.method.decode(received, target)
                seconds = time.perf_counter() - start
            self.cache[key] = (out, seconds, peak.mib)
        out, seconds, _ = self.cache[key]
        return out, received.num_bytes(), seconds

    def peak_mib(self, target: str) -> float | None:
        """Peak memory of the decode that served ``target`` (after :meth:`for_target`)."""
        return self.cache[self._key(target)[0]][2]


def method_device(method: Method) -> str:
    """The device a method computes on (what its peak memory is read from)."""
    return str(getattr(method, "device", "cpu")) if method.uses_torch else "cpu"


def measure_sample(
    method: Method,
    dataset: ImageDataset,
    sample: Sample,
    rates: Sequence[Any],
    metrics: Sequence[str],
    task_jobs: Sequence[TaskJob] = (),
    cache: BitstreamCache | None = None,
    stamp: RowStamp | None = None,
) -> SampleResult:
    """Encode ``sample`` once per rate point and measure every target that still needs it.

    ``rates`` are the rate points that need human metrics; each task job adds
    its own. Each target is charged the streams its family contract names and
    decodes only those; targets that receive the same streams share one decode
    unless the method decodes per target. Failures become rows with ``error``.
    With a ``cache``, a bitstream encoded before (same method config, code
    version, weights, image content and rate) is loaded instead of encoded again.
    Every row records what it was measured on (``stamp``: the sample's content
    and the rate point's weights), so rows of other inputs never count.
    """
    stamp = stamp or RowStamp({sample.id: getattr(sample, "content", None) or ""}, {})

    def row_start(rate: Any) -> dict[str, Any]:
        return {"sample": sample.id, "rate": rate, **stamp.row_fields(sample.id, rate)}

    result = SampleResult()
    human_rates = {str(r) for r in rates}
    all_rates = list(dict.fromkeys([*rates, *(r for job in task_jobs for r in job.rates)]))
    try:
        image = dataset.load(sample)
    except Exception as exc:  # noqa: BLE001 - any unreadable input fails only its sample
        error = _error_text(exc)
        result.human = [{**row_start(r), "error": error} for r in rates]
        for job in task_jobs:
            result.tasks[job.task.name] = [{**row_start(r), "error": error} for r in job.rates]
        return result
    height, width = image.shape[-3:-1]  # an image is H x W x 3, a video clip T x H x W x 3
    image_digest = cache.image_digest(image) if cache is not None else ""
    for job in task_jobs:
        if job.need_reference:
            row = {"sample": sample.id, "rate": UNCOMPRESSED, "content": stamp.contents.get(sample.id, "")}
            row["error"] = None
            result.references[job.task.name] = _predict_rows(job.task, sample, [(UNCOMPRESSED, row, image)])

    scorers: dict[str, Callable[[np.ndarray], float]] = {}
    unscorable: dict[str, str] = {}
    if human_rates:
        media = CLIP if image.ndim == 4 else IMAGE
        names = VM.clip_metric_names(metrics) if media == CLIP else list(metrics)
        for name, metric in registry.human(media, names).items():
            try:  # a scorer is built once per original (MS-SSIM keeps its pyramids across the rate sweep)
                scorers[name] = metric.scorers[media](image)
            except ValueError as exc:  # e.g. MS-SSIM of an image under 161 px
                unscorable[name] = f"{name}: {exc}"
    pending: dict[str, list[tuple[Any, dict[str, Any], Any]]] = {job.task.name: [] for job in task_jobs}
    for rate in all_rates:
        base = {**row_start(rate), "height": height, "width": width, "error": None}
        task_here = [job for job in task_jobs if str(rate) in {str(r) for r in job.rates}]
        try:
            cached = cache.load(image_digest, rate) if cache is not None else None
            encode_peak = Peak()
            if cached is not None:
                written, encoding_time = cached  # the time of the encode that made it
            else:
                with peak_memory(method_device(method)) as encode_peak:
                    start = time.perf_counter()
                    written = method.encode(image, rate)
                    encoding_time = time.perf_counter() - start
                if cache is not None:
                    cache.save(image_digest, rate, written, encoding_time)
        except Exception as exc:  # noqa: BLE001 - a codec failing on one sample fails that sample
            error = _error_text(exc)
            if str(rate) in human_rates:
                result.human.append({**base, "error": error})
            for job in task_here:
                result.tasks.setdefault(job.task.name, []).append({**base, "error": error})
            continue
        decoder = TargetDecoder(method, written)

        if str(rate) in human_rates:
            row = {**base, "encoding_time": encoding_time, "encode_peak_mib": encode_peak.mib}
            row["bytes_by_stream"] = {name: len(data) for name, data in written.streams.items()}
            row["stream_sha256"] = stream_digests(written)  # what `bench verify` checks a re-encode against
            row.update({k: written.info[k] for k in ("target_bpp", "parameter", "tries") if k in written.info})
            row["bpp_total"] = VM.rate_columns(written.num_bytes(), image)["bpp"]  # every stream a deployment sends
            try:
                reconstruction, row["bytes"], row["decoding_time"] = decoder.for_target(HUMAN)
                row["decode_peak_mib"] = decoder.peak_mib(HUMAN)
                row.update(VM.rate_columns(row["bytes"], image))  # clips: over frames x pixels, and kbps
                if reconstruction.shape != image.shape or reconstruction.dtype != np.uint8:
                    raise ValueError(
                        f"decoder returned {reconstruction.shape} {reconstruction.dtype}, expected {image.shape} uint8"
                    )
                for name, score in scorers.items():
                    row[name] = score(reconstruction)
                for name in unscorable:
                    row[name] = math.nan
                if unscorable:
                    row["notes"] = "; ".join(unscorable.values())
            except Exception as exc:  # noqa: BLE001
                row["error"] = _error_text(exc)
            result.human.append(row)
        for job in task_here:
            row = dict(base)
            try:
                task_input, row["bytes"], row["decoding_time"] = decoder.for_target(job.task.name)
                row.update(VM.rate_columns(row["bytes"], image))
                pending[job.task.name].append((rate, row, task_input))
            except Exception as exc:  # noqa: BLE001
                row["error"] = _error_text(exc)
                result.tasks.setdefault(job.task.name, []).append(row)
    for job in task_jobs:
        result.tasks.setdefault(job.task.name, []).extend(_predict_rows(job.task, sample, pending[job.task.name]))
    return result


# Worker processes receive the job once, at start, rather than with every sample.
_JOB: tuple[Method, ImageDataset, list[str], BitstreamCache | None, RowStamp | None] | None = None
#: prctl(2) option: the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int) -> None:
    """Make this process die when ``parent`` does, whatever kills it (SIGKILL included), on Linux.

    Without it a worker whose sweep was killed stays blocked on its pipe, holding files open. Elsewhere the
    workers notice their parent's death only at their next read of the work queue.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(
    parent: int,
    method: Method,
    dataset: ImageDataset,
    metrics: list[str],
    cache: BitstreamCache | None,
    stamp: RowStamp | None,
) -> None:
    global _JOB
    exit_with_parent(parent)
    _JOB = (method, dataset, metrics, cache, stamp)


def _run_in_worker(sample: Sample, rates: list[Any], task_jobs: list[TaskJob]) -> SampleResult:
    assert _JOB is not None
    method, dataset, metrics, cache, stamp = _JOB
    return measure_sample(method, dataset, sample, rates, metrics, task_jobs, cache, stamp)


@dataclass
class TaskLogs:
    """Where one task's rows go: predictions on reconstructions, and on the uncompressed input."""

    task: Task
    predictions: RowLog
    reference: RowLog


def run_sweep(
    method: Method,
    dataset: ImageDataset,
    store: RunStore,
    metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb"),
    workers: int = 1,
    resume: bool = True,
    progress: bool = True,
    samples: list[Sample] | None = None,
    tasks: Sequence[TaskLogs] = (),
    cache: BitstreamCache | None = None,
    stamp: RowStamp | None = None,
) -> dict[str, int]:
    """Measure what is not yet in ``store``; returns counts of work done and skipped.

    A (sample, rate) whose human row and every task's row exist (measured on
    today's content and weights: ``stamp``) is skipped; one that lacks only a
    task's row is encoded again for that task alone.
    """
    media = CLIP if getattr(dataset, "media", "image") == "video" else IMAGE
    registry.human(media, VM.clip_metric_names(metrics) if media == CLIP else metrics)  # unknown: one clear error
    samples = samples if samples is not None else dataset.samples()
    content_only = RowStamp(stamp.contents) if stamp is not None else None
    done = store.done_keys(stamp) if resume else set()
    task_done = {t.task.name: t.predictions.done_keys(stamp) if resume else set() for t in tasks}
    ref_done = {t.task.name: {s for s, _ in t.reference.done_keys(content_only)} if resume else set() for t in tasks}
    todo: list[tuple[Sample, list[Any], list[TaskJob]]] = []
    total = 0
    for sample in samples:
        rates = [r for r in method.rates if (sample.id, str(r)) not in done]
        jobs = []
        for t in tasks:
            job = TaskJob(
                t.task,
                [r for r in method.rates if (sample.id, str(r)) not in task_done[t.task.name]],
                sample.id not in ref_done[t.task.name],
            )
            if job.rates or job.need_reference:
                jobs.append(job)
        total += len(method.rates) * (1 + len(tasks))
        if rates or jobs:
            todo.append((sample, rates, jobs))
    pending = sum(len(r) + sum(len(j.rates) for j in jobs) for _, r, jobs in todo)
    stats = {"samples": len(samples), "measured": 0, "skipped": total - pending, "failed": 0}
    if not todo:
        log.info("nothing to do: all %d rows are in %s", total, store.run_dir)
        return stats
    if stats["skipped"]:
        log.info("resuming: %d of %d rows already in %s", stats["skipped"], total, store.run_dir)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"{method.name} on {dataset.name}", unit="image", disable=not progress)
    logs = {t.task.name: t for t in tasks}

    def record(result: SampleResult) -> None:
        for name, rows in result.references.items():
            logs[name].reference.append(rows)
        for name, rows in result.tasks.items():
            logs[name].predictions.append(rows)
        store.append_rows(result.human)  # last: a human row means its sample's task rows are in
        measured, failed = result.count()
        stats["measured"] += measured
        stats["failed"] += failed
        for r in [*result.human, *(r for rs in result.tasks.values() for r in rs)]:
            if r.get("error"):
                log.warning("%s at rate %s failed: %s", r["sample"], r["rate"], r["error"])
        bar.update(1)

    in_torch = method.uses_torch or any(t.task.uses_torch for t in tasks)
    n_workers = 1 if in_torch else max(1, min(workers, len(todo)))

    def run_pool(items: list[tuple[Sample, list[Any], list[TaskJob]]], size: int) -> list[Any]:
        """Measure ``items`` in a pool of ``size`` workers; the items lost to a dead worker."""
        lost = []
        context = multiprocessing.get_context("fork")  # workers inherit imports: no start-up cost
        initargs = (os.getpid(), method, dataset, list(metrics), cache, stamp)
        with ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
            futures = {pool.submit(_run_in_worker, *item): item for item in items}
            for future in as_completed(futures):
                try:
                    record(future.result())
                except BrokenProcessPool:
                    lost.append(futures[future])
        return lost

    try:
        if n_workers == 1:
            for sample, rates, jobs in todo:
                record(measure_sample(method, dataset, sample, rates, metrics, jobs, cache, stamp))
        else:
            lost = run_pool(todo, n_workers)
            if lost:
                log.warning("a worker process died; measuring the %d samples it took down one by one", len(lost))
            for item in lost:  # alone in a fresh worker, only the sample that kills it fails
                if run_pool([item], 1):
                    record(_crashed(*item, stamp=stamp))
    finally:
        bar.close()
    return stats


def _crashed(sample: Sample, rates: list[Any], task_jobs: list[TaskJob], stamp: RowStamp | None = None) -> SampleResult:
    """Rows saying a sample killed its worker process (they are retried on resume)."""
    error = "WorkerCrashed: the worker process died while measuring this sample (a codec or task crashed hard)"

    def row(rate: Any) -> dict[str, Any]:
        fields = stamp.row_fields(sample.id, rate) if stamp is not None else {}
        return {"sample": sample.id, "rate": rate, **fields, "error": error}

    result = SampleResult(human=[row(r) for r in rates])
    for job in task_jobs:
        result.tasks[job.task.name] = [row(r) for r in job.rates]
    return result
