"""``python -m bench verify RESULTS_JSON``: check that a published result is what its inputs give.

From the results JSON alone (its recorded method, dataset and metrics configs, its rows log), for every row that
belongs to the run: take the bitstream from the run's cache (``--cache-dir``) when it is there, else encode the
sample again with the recorded config; check the SHA-256 of every stream against the row's ``stream_sha256``;
decode what the human target receives and compute its metrics again; compare bpp and every metric with the row.
Before that, the samples' content and the weight files are checked against the digests the run recorded (another
Kodak, other weights: every row would differ for that reason, so it is said once, first).

Every mismatch is named (sample, rate point, what, recorded, now). Exit 0 when everything matches, 1 when
something does not, 2 when the file cannot be verified (not a results file, inputs missing). Task predictions are
not re-run here: their rows are keyed by the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datasets.base import DatasetUnavailable
from bench.methods.base import HUMAN
from bench.metrics import registry
from bench.metrics.registry import CLIP, IMAGE
from bench.running.keys import cache_key, weights_key
from bench.running.recorded import RecordedRun, RunFileError
from bench.running.runner import BitstreamCache, TargetDecoder, stream_digests

log = logging.getLogger(__name__)

#: how far a recomputed number may be from the recorded one (bytes and hashes must be equal)
TOLERANCE = {"bpp": 0.0, "default": 1e-9}


@dataclass
class Mismatch:
    sample: str
    rate: Any
    what: str
    recorded: Any
    now: Any

    def __str__(self) -> str:
        return f"{self.sample} @ {self.rate}: {self.what}: recorded {self.recorded}, now {self.now}"


@dataclass
class Verdict:
    rows: int
    checked_numbers: int
    mismatches: list[Mismatch]
    from_cache: int

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _close(a: float, b: float, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def verify(results: str | Path, cache_dir: str | Path | None = None, limit: int | None = None) -> Verdict:
    """Re-derive every row of a run (see the module docstring); the mismatches found."""
    run = RecordedRun.load(results)
    method, dataset = run.method(), run.dataset()
    stamp = run.stamp()
    mismatches: list[Mismatch] = []
    try:
        samples = [s for s in dataset.samples() if s.id in stamp.contents]
    except DatasetUnavailable as exc:
        raise RunFileError(f"{results}: the run's dataset is not here: {exc}") from exc
    for s in samples:
        now = dataset.content_digest(s)
        if now != stamp.contents[s.id]:
            mismatches.append(Mismatch(s.id, "-", "sample content", stamp.contents[s.id], now))
    for rate, recorded in (stamp.weights or {}).items():
        r = next((x for x in method.rates if str(x) == rate), None)
        now = weights_key(method.weight_files(r)) if r is not None else "(rate not configured)"
        if now != recorded:
            mismatches.append(Mismatch("-", rate, "weight files", recorded, now))
    if mismatches:
        return Verdict(0, 0, mismatches, 0)  # another input: every row would differ for that reason
    metrics = list(run.meta["config"].get("metrics") or [])
    cache = None
    if cache_dir is not None:
        cache = BitstreamCache(cache_dir, cache_key(run.meta["identity"]), stamp.weights)
    rows = [r for r in run.rows.current(stamp) if not r.get("error")]
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_sample.setdefault(r["sample"], []).append(r)
    checked, from_cache, done = 0, 0, 0
    for sample in samples:
        if sample.id not in by_sample or (limit is not None and done >= limit):
            continue
        done += 1
        image = dataset.load(sample)
        media = CLIP if image.ndim == 4 else IMAGE
        scorers = {n: m.scorers[media](image) for n, m in registry.human(media, [*metrics]).items()}
        for row in by_sample[sample.id]:
            rate = next((x for x in method.rates if str(x) == str(row["rate"])), row["rate"])
            cached = cache.load(cache.image_digest(image), rate) if cache is not None else None
            written = cached[0] if cached is not None else method.encode(image, rate)
            from_cache += cached is not None
            recorded = row.get("stream_sha256")
            if recorded is not None:
                now = stream_digests(written)
                for name in sorted(set(recorded) | set(now)):
                    checked += 1
                    if recorded.get(name) != now.get(name):
                        was, got = (recorded.get(name) or "-")[:16], (now.get(name) or "-")[:16]
                        mismatches.append(Mismatch(sample.id, row["rate"], f"stream {name!r} SHA-256", was, got))
            decoded, charged, _ = TargetDecoder(method, written).for_target(HUMAN)
            values = {"bytes": charged, **{n: score(decoded) for n, score in scorers.items()}}
            for name, value in values.items():
                if name not in row:
                    continue
                checked += 1
                tol = TOLERANCE.get(name, TOLERANCE["default"])
                if not _close(row[name], value, tol):
                    mismatches.append(Mismatch(sample.id, row["rate"], name, row[name], value))
    return Verdict(len(rows), checked, mismatches, from_cache)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench verify",
        description="re-decode (or re-encode) every row of a results JSON and check stream hashes and numbers",
    )
    parser.add_argument("results", help="a results JSON (<results_dir>/<dataset>/<method>.json)")
    parser.add_argument("--cache-dir", default=None, help="the run's bitstream cache (cache_dir), if it had one")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples (a quick check)")
    args = parser.parse_args(list(argv))
    try:
        verdict = verify(args.results, args.cache_dir, args.limit)
    except RunFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for m in verdict.mismatches:
        print(f"MISMATCH {m}")
    source = f"{verdict.from_cache} bitstreams from the cache, the others encoded again"
    status = "verified" if verdict.ok else f"{len(verdict.mismatches)} mismatch(es)"
    print(f"{status}: {verdict.rows} rows, {verdict.checked_numbers} hashes and numbers checked ({source})")
    return 0 if verdict.ok else 1
