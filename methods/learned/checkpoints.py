"""Where a learned method's per-rate weights live, and reading them safely.

A learned method has one trained network per rate point (one λ each, as
CompressAI's qualities). Its config names them either as a mapping
``rate -> file`` or as a directory holding one file per rate named by a
pattern (``str.format`` fields ``name`` and ``quality``). Files are read with
``weights_only=True`` (no pickled code runs); a training checkpoint that
keeps the state dict under a key (``state_dict``, ``model``, ...) works as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.methods.base import MethodUnavailable
from bench.methods.learned.compressai import state_dict_of

DEFAULT_PATTERN = "{name}-q{quality}.pt"


class CheckpointSet:
    """The weight files of a method's rate points (``checkpoints`` and ``pattern`` as in the method config)."""

    def __init__(
        self,
        method: str,
        checkpoints: Mapping[Any, str | os.PathLike] | str | os.PathLike | None,
        pattern: str | None = None,
    ):
        self.method = method
        self.pattern = pattern or DEFAULT_PATTERN
        self.files: dict[int, Path] | None = None
        self.folder: Path | None = None
        if isinstance(checkpoints, Mapping):
            self.files = {int(k): Path(os.path.expanduser(str(v))) for k, v in checkpoints.items()}
        elif isinstance(checkpoints, (str, os.PathLike)):
            self.folder = Path(os.path.expanduser(str(checkpoints)))
        elif checkpoints is not None:
            raise ValueError(
                f"method {method!r}: checkpoints must be null, a mapping rate -> file or a directory, "
                f"not {type(checkpoints).__name__}"
            )

    @property
    def configured(self) -> bool:
        return self.files is not None or self.folder is not None

    def path(self, quality: int) -> Path:
        """The file holding rate point ``quality``'s weights (which may not exist)."""
        if self.files is not None:
            if quality not in self.files:
                raise MethodUnavailable(
                    f"{self.method}: no checkpoint configured for rate {quality} (configured: {sorted(self.files)})"
                )
            return self.files[quality]
        if self.folder is None:
            raise MethodUnavailable(
                f"{self.method}: no checkpoints configured; train them with `python -m bench train "
                f"method={self.method} ...` and set method.checkpoints to the folder (or a mapping rate -> file)"
            )
        return self.folder / self.pattern.format(name=self.method, quality=quality)

    def missing(self, qualities: list[int]) -> str | None:
        """Why some rate points have no weights on disk, or None when all do."""
        try:
            absent = [(q, p) for q in qualities if not (p := self.path(q)).is_file()]
        except MethodUnavailable as exc:
            return str(exc)
        if not absent:
            return None
        q, p = absent[0]
        return (
            f"{self.method}: checkpoint file(s) not found for rates {[a for a, _ in absent]}, e.g. {p}; "
            f"train them with `python -m bench train method={self.method} ...`"
        )

    def load(self, quality: int) -> dict[str, Any]:
        """The state dict of rate point ``quality``; MethodUnavailable naming the file when it cannot be read."""
        import torch

        path = self.path(quality)
        if not path.is_file():
            raise MethodUnavailable(f"{self.method}: checkpoint file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return dict(state_dict_of(obj))
        except Exception as exc:  # unreadable, not a torch file, pickled code (weights_only refuses it)
            raise MethodUnavailable(
                f"{self.method}: cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
            ) from exc
