"""What a method whose rate points are trained networks shares: its weight files, entropy coder and device.

One trained network per rate point (one λ each, as CompressAI's qualities), found by ``checkpoints`` and
``checkpoint_pattern`` (:class:`~bench.methods.learned.checkpoints.CheckpointSet`), entropy-coded with
``entropy_coder`` on ``device``. A network can also be installed from memory (:meth:`LearnedMethod.set_network`:
tests, a training loop's validation); rows then record its digest instead of a file's SHA-256, so numbers of an
installed network never meet those of a file.

Subclasses say how to build an untrained network (``new_network``) and may say how a checkpoint is loaded
(``load_network``; the default loads a state dict into ``new_network()`` and builds the entropy tables).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.methods.base import CodecError, Method
from bench.methods.learned.checkpoints import CheckpointSet
from bench.methods.learned.compressai import default_entropy_coder, one_pass_scale_indexes, ready_for_coding


class LearnedMethod(Method):
    """A method with one trained network per rate point (see the module docstring)."""

    uses_torch = True

    def __init__(
        self,
        name: str,
        rates: Sequence[Any],
        description: str = "",
        checkpoints: Mapping[Any, str] | str | None = None,
        checkpoint_pattern: str | None = None,
        entropy_coder: str = "ans",
        device: str = "cpu",
        **options: Any,
    ):
        super().__init__(name, rates, description, **options)
        self.checkpoints = CheckpointSet(name, checkpoints, checkpoint_pattern)
        self.entropy_coder = entropy_coder
        self.device = device
        self._networks: dict[Any, Any] = {}
        self._in_memory: set[Any] = set()

    # --- what a subclass provides ------------------------------------------------------
    def new_network(self) -> Any:
        """An untrained network of this method's configuration (training starts here)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its network")

    def load_network(self, rate: Any) -> Any:
        """The trained network of ``rate`` from its checkpoint, ready to code (entropy tables built)."""
        return ready_for_coding(
            self.new_network(),
            self.checkpoints.load(int(rate)),
            self.entropy_coder,
            self.device,
            f"{self.name}: checkpoint {self.checkpoints.path(int(rate))} does not fit {self.shape_text()}",
        )

    def shape_text(self) -> str:
        """The configuration a checkpoint must fit, for error messages."""
        return "this method's configuration"

    def fetch_weights(self) -> list[Path]:
        """Every configured rate point's weights, each verified against its committed sidecar (downloaded from
        ``release_url`` when one is configured and the file is missing): what ``python -m bench fetch`` runs."""
        from bench.training.weights import fetch_release

        return fetch_release([self.checkpoints.path(int(r)) for r in self.rates], self.options.get("release_url"))

    # --- networks ------------------------------------------------------------------------
    def prepared(self, net: Any) -> Any:
        """``net`` with its entropy tables built, in eval mode, on the device."""
        import torch

        with default_entropy_coder(self.entropy_coder), torch.no_grad():
            net.update(force=True)
        return one_pass_scale_indexes(net.eval().to(self.device))

    def set_network(self, rate: Any, net: Any) -> None:
        """Code ``rate`` with ``net`` (tests, a training loop): rows record its digest, not a file's."""
        self._networks[rate] = self.prepared(net)
        self._in_memory.add(rate)

    def network(self, rate: Any) -> Any:
        """The network of ``rate``, loaded from its checkpoint on first use."""
        if rate not in self._networks:
            if rate not in self.rates:
                raise CodecError(f"{self.name}: no rate point {rate!r} (rates {self.rates})")
            self._networks[rate] = self.load_network(rate)
        return self._networks[rate]

    def missing_weights(self) -> str | None:
        """Why some rate points have no trained network here, or None."""
        missing = [int(r) for r in self.rates if r not in self._networks]
        return self.checkpoints.missing(missing) if missing else None

    # --- what rows record -------------------------------------------------------------------
    def weight_files(self, rate: Any) -> dict[str, Path | str]:
        from bench.io.digests import module_digest
        from bench.running.keys import GENERATED

        files: dict[str, Path | str] = {}
        if rate in self._in_memory:
            files["model"] = GENERATED + module_digest(self._networks[rate])
        else:
            files["model"] = self.checkpoints.path(int(rate))
        task = getattr(self, "machine_task", None)
        if task is not None:  # the method runs (part of) the task network itself
            files.update({f"task {role}": f for role, f in task.weight_files().items()})
        return files
