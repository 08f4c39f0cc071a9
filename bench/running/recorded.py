"""A finished run read back from its results JSON: its method, dataset and tasks rebuilt from the recorded
configs, its rows, and which rows belong to it. What the FiftyOne export and ``bench verify`` start from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.running.keys import RowStamp
from bench.running.store import RowLog


class RunFileError(RuntimeError):
    """Not a results file this harness wrote, or one whose rows are gone; the message says which and why."""


@dataclass
class RecordedRun:
    """A finished run as its results JSON describes it (``load`` checks it is one)."""

    json_path: Path
    document: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        return self.document["meta"]

    @property
    def results_root(self) -> Path:
        return self.json_path.parent.parent

    @property
    def rows(self) -> RowLog:
        return RowLog(self.results_root / self.meta["rows"])

    @property
    def rates(self) -> list[Any]:
        return list(self.document["results"]["rate"])

    @classmethod
    def load(cls, path: str | Path) -> RecordedRun:
        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if len(found) != 1:
                names = ", ".join(p.name for p in found) or "none"
                raise RunFileError(f"{path}: name one results JSON of this folder (found: {names})")
            path = found[0]
        if not path.is_file():
            raise RunFileError(f"{path}: no such results file (expected <results_dir>/<dataset>/<method>.json)")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFileError(f"{path}: not a results JSON ({exc})") from exc
        config = (document.get("meta") or {}).get("config") if isinstance(document, dict) else None
        if not isinstance(config, dict) or "method" not in config or "dataset" not in config:
            raise RunFileError(f"{path}: no meta.config.method/dataset: not a results JSON written by `bench run`")
        run = cls(path, document)
        if not run.rows.path.is_file():
            raise RunFileError(f"{path}: its rows {run.rows.path} are missing (moved without their folder?)")
        return run

    def method(self) -> Any:
        from hydra.utils import instantiate

        cfg = dict(self.meta["config"]["method"])
        device = cfg.pop("device", None)  # recorded by earlier versions in the method config
        device = ((self.meta.get("identity") or {}).get("device") or {}).get("device", device)
        method = instantiate(cfg)
        if device is not None and hasattr(method, "device"):
            method.device = device
        return method

    def dataset(self) -> Any:
        from hydra.utils import instantiate

        return instantiate(dict(self.meta["config"]["dataset"]))

    def tasks(self) -> list[tuple[Any, RowLog, RowLog]]:
        """Each task of the run with its prediction rows and its rows on the uncompressed images."""
        from hydra.utils import instantiate

        out = []
        for name, conf in (self.meta["config"].get("tasks") or {}).items():
            where = (self.meta.get("tasks") or {}).get(name) or {}
            if "rows" not in where:
                raise RunFileError(
                    f"{self.json_path}: task {name!r} does not say where its rows are (results written by an "
                    "earlier harness version): run the sweep again"
                )
            predictions = RowLog(self.results_root / where["rows"])
            reference = RowLog(self.results_root / where["reference_rows"])
            out.append((instantiate(dict(conf)), predictions, reference))
        return out

    def stamp(self) -> RowStamp:
        """Which rows belong to this run: its samples' content and its rate points' weights."""
        contents = (self.meta.get("sample_set") or {}).get("contents")
        if contents is None:
            raise RunFileError(
                f"{self.json_path}: no sample contents in meta (results written by an earlier harness version): "
                "run the sweep again"
            )
        return RowStamp(contents, self.meta.get("rate_weights") or {})
