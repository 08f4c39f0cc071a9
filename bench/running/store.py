"""The results store: per-sample rows, per-rate aggregates, CompressAI-style JSON.

Layout under the results root::

    <dataset>/<method>/<config-hash>/rows.jsonl   one line per (sample, rate point)
    <dataset>/<method>/<config-hash>/config.json  the resolved config of those rows
    <dataset>/<method>.json                       CompressAI results format + ``meta``
    <dataset>/<method>.csv                        the per-rate aggregate table

``rows.jsonl`` (and ``task-<name>-<hash>.jsonl`` per machine task) is the
resume log: a line is appended (and flushed to disk) as soon as its sample
finishes, so a killed run loses at most the samples in
flight; a torn last line is ignored on reading. Everything else is written
atomically (temporary file, then rename).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.io.files import atomic_write_text
from bench.running.keys import RowStamp

#: per-sample columns averaged into the aggregate, in CompressAI's key names
AVERAGED = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")
#: averaged too when the rows have them (video clips: rate per second, 4:2:0 PSNR; frames per clip; the bits of
#: every stream written, which differ from ``bpp`` for methods whose human is sent only some streams)
AVERAGED_IF_PRESENT = ("kbps", "psnr-yuv420", "frames", "bpp_total", "encode_peak_mib", "decode_peak_mib")
#: per-rate figures that are not means of rows (counted once: ``bench.running.profile``)
PER_RATE = ("kmac_enc", "kmac_dec")
#: how many samples stand behind each rate point, and why the others do not
COUNTS = ("n", "n_failed", "n_undefined", "n_lossless")


class RowLog:
    """An append-only JSON-lines file of rows: the resume log of one kind of measurement.

    Appends are one locked ``write`` each, so concurrent jobs sharing a folder
    never interleave; a torn last line (a killed writer) is ignored on reading
    and cut before the next append.
    """

    def __init__(self, path: Path):
        self.path = path

    def current(self, stamp: RowStamp | None = None) -> list[dict[str, Any]]:
        """The rows that count today: all of them without a ``stamp``, else those of today's content and weights."""
        rows = self.read()
        return rows if stamp is None else [r for r in rows if stamp.counts(r)]

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn write of a killed run
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def done_keys(self, stamp: RowStamp | None = None) -> set[tuple[str, str]]:
        """(sample, rate) pairs measured without error (on today's content and weights): not redone on resume."""
        return {(r["sample"], str(r["rate"])) for r in self.current(stamp) if not r.get("error")}

    def stale_count(self, stamp: RowStamp) -> int:
        """Rows of today's samples that were measured on other content or weights (kept, never used)."""
        return sum(1 for r in self.read() if r.get("sample") in stamp.contents and not stamp.counts(r))

    @staticmethod
    def _drop_torn_tail(fd: int) -> None:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        data = os.pread(fd, size, 0)
        os.ftruncate(fd, data.rfind(b"\n") + 1)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # rows keep inf (the PSNR of a lossless decode); JSON lines read back by Python
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._drop_torn_tail(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def table(self, stamp: RowStamp | None = None) -> pd.DataFrame:
        """The rows that count (see :meth:`current`); a (sample, rate) measured twice keeps its latest row."""
        rows = self.current(stamp)
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame(rows)
        return df.drop_duplicates(subset=["sample", "rate"], keep="last").reset_index(drop=True)


class RunStore:
    """Rows of one (dataset, method, config hash) and the files derived from them.

    Human-metric rows and each task's prediction rows live in separate logs, so
    a task added to a finished sweep adds its own rows beside the others; the
    task networks' predictions on the uncompressed images are per dataset and
    shared by every method (``reference_log``).
    """

    def __init__(self, root: str | Path, dataset: str, method: str, config_hash: str):
        self.root = Path(root)
        self.dataset = dataset
        self.method = method
        self.config_hash = config_hash
        self.run_dir = self.root / dataset / method / config_hash
        self.rows_path = self.run_dir / "rows.jsonl"
        self.human = RowLog(self.rows_path)
        self.json_path = self.root / dataset / f"{method}.json"
        self.csv_path = self.root / dataset / f"{method}.csv"

    def task_log(self, task: str, task_hash: str) -> RowLog:
        """Predictions of one task on this method's reconstructions."""
        return RowLog(self.run_dir / f"task-{task}-{task_hash}.jsonl")

    def reference_log(self, task: str, task_hash: str) -> RowLog:
        """Predictions of one task on the uncompressed images (computed once per dataset)."""
        return RowLog(self.root / self.dataset / "_uncompressed" / f"{task}-{task_hash}.jsonl")

    # the human rows, under the names the rest of the harness uses
    def read_rows(self) -> list[dict[str, Any]]:
        return self.human.read()

    def done_keys(self, stamp: RowStamp | None = None) -> set[tuple[str, str]]:
        return self.human.done_keys(stamp)

    def append_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self.human.append(rows)

    def sample_table(self, stamp: RowStamp | None = None) -> pd.DataFrame:
        return self.human.table(stamp)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True, default=str))

    def write_identity(self, identity: dict[str, Any]) -> None:
        """The parts of the run key (``bench.running.keys``), so a later run can say what differs."""
        from bench.running.keys import IDENTITY_FILE

        text = json.dumps(identity, indent=2, sort_keys=True, default=str)
        atomic_write_text(self.run_dir / IDENTITY_FILE, text)


def exact_mean(values: pd.Series, finite_only: bool = False) -> float:
    """Mean of the defined values, exactly rounded (``math.fsum``): the same figure whatever
    order the rows were written in (workers and shards finish in any order). ``finite_only`` also
    leaves out infinities (the PSNR of a lossless decode)."""
    defined = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if finite_only:
        defined = [v for v in defined if math.isfinite(v)]
    return math.fsum(defined) / len(defined) if defined else math.nan


def aggregate(samples: pd.DataFrame, rates: list[Any]) -> pd.DataFrame:
    """Mean over samples per rate point, in the method's rate order: one sample set for every metric.

    - Failed samples (``error``) are left out and counted in ``n_failed``.
    - A sample for which a quality metric is undefined (NaN: MS-SSIM of an image of 160 pixels or less)
      leaves the point for every metric, counted in ``n_undefined``, so bpp and quality average the same
      images; a metric undefined for every sample is NaN at the point and excludes no one.
    - A lossless decode keeps PSNR = inf in its row; the point's PSNR averages the other samples and
      ``n_lossless`` says how many were left out of that mean (bpp and MS-SSIM include them). The rule is
      the same for any human metric that is infinite on an exact decode.
    - ``n`` is the number of samples behind the point.
    """
    if samples.empty:
        return pd.DataFrame(columns=["rate", *COUNTS, *AVERAGED])
    from bench.metrics import registry

    ok = samples[samples["error"].isna()] if "error" in samples else samples
    declared = registry.declared()
    quality = [c for c in samples.columns if c in declared and declared[c].human]
    columns = list(dict.fromkeys([*AVERAGED, *(c for c in AVERAGED_IF_PRESENT if c in samples), *quality]))
    out = []
    for rate in rates:
        at_rate = samples[samples["rate"].astype(str) == str(rate)]
        good = ok[ok["rate"].astype(str) == str(rate)]
        defined = [m for m in quality if good[m].notna().any()]
        undefined = good[defined].isna().any(axis=1) if defined and len(good) else pd.Series(False, index=good.index)
        point = good[~undefined]
        lossless = (point[quality] == math.inf).any(axis=1) if quality and len(point) else pd.Series(dtype=bool)
        row: dict[str, Any] = {
            "rate": rate,
            "n": len(point),
            "n_failed": len(at_rate) - len(good),
            "n_undefined": int(undefined.sum()),
            "n_lossless": int(lossless.sum()),
        }
        for col in columns:
            row[col] = exact_mean(point[col], finite_only=col in quality) if col in point and len(point) else math.nan
        out.append(row)
    return pd.DataFrame(out)


def results_rows(root: str | Path, meta: dict[str, Any]) -> pd.DataFrame:
    """The human rows a results JSON was aggregated from, as the runner chose them: its rows log (``meta.rows``,
    relative to the results root), only rows of its sample set's content and its rate points' weights
    (``meta.sample_set.contents``, ``meta.rate_weights``; older files record neither: every row of the log, by sample
    id), the latest per (sample, rate). Raises ``FileNotFoundError`` naming the log when it is not there."""
    rel = meta.get("rows")
    if not isinstance(rel, str) or not rel:
        raise FileNotFoundError("the results file records no rows log (meta.rows)")
    log = RowLog(Path(root) / rel)
    if not log.path.is_file():
        raise FileNotFoundError(f"rows log {log.path} is not there")
    sample_set = meta.get("sample_set") if isinstance(meta.get("sample_set"), dict) else {}
    contents = sample_set.get("contents") if isinstance(sample_set.get("contents"), dict) else None
    weights = meta.get("rate_weights") if isinstance(meta.get("rate_weights"), dict) else None
    rows = log.table(RowStamp(contents, weights) if contents is not None else None)
    if contents is not None and not rows.empty:
        rows = rows[rows["sample"].isin(set(contents))].reset_index(drop=True)
    return rows


def compressai_json(name: str, description: str, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Our results file: CompressAI's ``{name, description, results}`` plus ``meta``.

    ``results`` holds CompressAI's keys, then ``rate`` (the rate points), the
    sample counts ``n``, ``n_failed``, ``n_undefined``, ``n_lossless``, then
    each task's ``bpp@<task>`` and ``<task>/<metric>`` (``<task>/n`` counts
    the samples behind each figure).
    """
    from bench.metrics import registry

    declared = registry.declared()
    human = [c for c in table.columns if c in declared and declared[c].human]
    present = list(dict.fromkeys(col for col in (*AVERAGED, *AVERAGED_IF_PRESENT, *human) if col in table))
    results: dict[str, list[Any]] = {col: [float(v) for v in table[col]] for col in present}
    results["rate"] = [r if isinstance(r, (int, float, str)) else str(r) for r in table["rate"]]
    for col in PER_RATE:
        if col in table:
            results[col] = [None if v is None or v != v else float(v) for v in table[col]]
    for col in COUNTS:  # the samples behind each point
        if col in table:
            results[col] = [int(v) for v in table[col]]
    for col in table.columns:
        if "/" in col or col.startswith("bpp@"):
            results[col] = [float(v) for v in table[col]]
    return {"name": name, "description": description, "results": results, "meta": meta}


def write_outputs(store: RunStore, document: dict[str, Any], table: pd.DataFrame) -> None:
    # NaN / Infinity as Python's json writes them (CompressAI's tools read them; null breaks its plot)
    atomic_write_text(store.json_path, json.dumps(document, indent=2))
    atomic_write_text(store.csv_path, table.to_csv(index=False))


def load_results(root: str | Path, dataset: str) -> dict[str, dict[str, Any]]:
    """Every method's results JSON for ``dataset`` under ``root``, by file stem."""
    folder = Path(root) / dataset
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a valid results JSON ({exc})") from exc
    return out
