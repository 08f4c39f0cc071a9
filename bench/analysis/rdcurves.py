"""Rate-distortion curves, and reading them from CompressAI-style results JSON.

CompressAI writes one JSON per method and dataset::

    {"name": ..., "description": ..., "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}

(published-paper files may hold ``"ms-ssim-db-rgb"`` instead of ``"ms-ssim-rgb"``). Our own result JSON is a
superset of that format with a ``meta`` key, so one reader serves both, and CompressAI's plotting reads ours.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

RATE_KEY = "bpp"


def _as_vector(curve: str, what: str, data: object) -> np.ndarray:
    try:
        arr = np.array(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"curve {curve!r}: {what} are not all numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"curve {curve!r}: {what} must be a 1-D sequence, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class RDCurve:
    """One method's rate-quality points: ``rates`` in bpp, ``values`` in the units of ``metric``.

    ``metric`` is the results-JSON key (``"psnr-rgb"``, ``"ms-ssim-rgb"``, ``"mAP"``, ...); BD functions read the
    quality axis from it and refuse to compare curves whose metrics differ. Points may be in any order.
    """

    name: str
    rates: np.ndarray
    values: np.ndarray
    metric: str
    family: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        rates = _as_vector(self.name, "rates", self.rates)
        values = _as_vector(self.name, f"{self.metric} values", self.values)
        if len(rates) != len(values):
            raise ValueError(
                f"curve {self.name!r}: {len(rates)} rates but {len(values)} {self.metric} values; lengths must match"
            )
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.rates)

    def with_points(self, rates: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> RDCurve:
        """Same curve (name, metric, family, source) with other points, e.g. its monotone fit."""
        return replace(self, rates=rates, values=values)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, for recording the curve a BD figure was computed on."""
        out: dict[str, object] = {
            "name": self.name,
            "metric": self.metric,
            RATE_KEY: self.rates.tolist(),
            "values": self.values.tolist(),
        }
        if self.family is not None:
            out["family"] = self.family
        if self.source is not None:
            out["source"] = self.source
        return out


def load_compressai_json(path: str | Path, metric: str, *, name: str | None = None) -> RDCurve:
    """Read one quality axis (``metric``, a key of ``results``) of a CompressAI-format results JSON.

    The curve is named after the file's ``name`` (or ``name=``); ``family`` comes from our ``meta.family`` when
    present. A missing key is an error that lists the keys the file has.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: no 'results' object; not a CompressAI-format results JSON")
    missing = [key for key in (RATE_KEY, metric) if key not in results]
    if missing:
        have = ", ".join(sorted(results)) or "none"
        raise ValueError(f"{path}: results lack {', '.join(map(repr, missing))} (it has: {have})")
    meta = doc.get("meta")
    family = meta.get("family") if isinstance(meta, dict) else None
    curve_name = name if name is not None else str(doc.get("name") or path.stem)
    return RDCurve(
        name=curve_name,
        rates=results[RATE_KEY],
        values=results[metric],
        metric=metric,
        family=family,
        source=str(path),
    )


def curve_from_rows(
    rows: pd.DataFrame,
    metric: str,
    name: str,
    *,
    rate_col: str = "rate_point",
    bpp_col: str = RATE_KEY,
    family: str | None = None,
    source: str | None = None,
) -> RDCurve:
    """Average per-image rows into one point per rate point, as CompressAI averages bpp and metrics over images.

    Only right for metrics that are means of per-image values (PSNR, MS-SSIM, top-1 as 0/1 per image); COCO mAP or
    dataset-level mIoU must come from their evaluators, not from a mean of rows.
    """
    missing = [c for c in (rate_col, bpp_col, metric) if c not in rows.columns]
    if missing:
        raise ValueError(f"curve {name!r}: rows lack column(s) {', '.join(map(repr, missing))}")
    means = rows.groupby(rate_col, sort=True)[[bpp_col, metric]].mean()
    return RDCurve(
        name=name,
        rates=means[bpp_col].to_numpy(),
        values=means[metric].to_numpy(),
        metric=metric,
        family=family,
        source=source,
    )
