"""torchvision networks loaded without downloading anything: weights from the hub cache or a local state dict, and the
lazy network every torchvision task shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.devices import resolve_device
from bench.tasks.base import LazyNetwork, TaskUnavailable


def torchvision_weights(arch: str, weights: str | None) -> Any:
    """The torchvision weights enum member for ``arch`` ("DEFAULT", "COCO_WITH_VOC_LABELS_V1" or a full name)."""
    if weights is None:
        return None
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    name = weights.split(".")[-1]
    try:
        return enum[name]
    except KeyError:
        raise ValueError(f"{arch}: no weights {weights!r}; known: {[w.name for w in enum]}") from None


def torchvision_weights_problem(arch: str, weights: Any, checkpoint: str | os.PathLike | None) -> str | None:
    """Why the weights cannot be loaded offline (file missing), naming the file, TORCH_HOME and the URL."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        return None if path.is_file() else f"{arch}: checkpoint file not found: {path}"
    if weights is None:
        return None
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        return None
    return (
        f"{arch}: torchvision weights {type(weights).__name__}.{weights.name} are not in the torch hub cache: "
        f"{cached} is missing (the cache is $TORCH_HOME/hub, TORCH_HOME={os.environ.get('TORCH_HOME', 'unset')}). "
        f"Download {weights.url} where there is internet and put it there, or set the task's checkpoint "
        "to a local state_dict file"
    )


def torchvision_weight_files(weights: Any, checkpoint: str | os.PathLike | None) -> dict[str, Path]:
    """The file a torchvision network's weights come from: the local checkpoint, or the hub cache's file."""
    if checkpoint is not None:
        return {"network": Path(checkpoint).expanduser()}
    if weights is None:
        return {}
    import torch.hub

    return {"network": Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)}


def _without_backbone_weights(arch: str) -> dict[str, Any]:
    """``weights_backbone=None`` for builders that take it (detection, segmentation); classifiers reject it."""
    import inspect

    import torchvision

    builder = torchvision.models.get_model_builder(arch)
    return {"weights_backbone": None} if "weights_backbone" in inspect.signature(builder).parameters else {}


def load_torchvision(arch: str, weights: Any, checkpoint: str | os.PathLike | None, **kwargs: Any) -> Any:
    """Build a torchvision model and load its weights, never downloading anything."""
    import torch
    import torchvision

    why = torchvision_weights_problem(arch, weights, checkpoint)
    if why:
        raise TaskUnavailable(why)
    if checkpoint is not None:
        if weights is not None:
            kwargs.setdefault("num_classes", len(weights.meta["categories"]))
        state = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):  # training checkpoints wrap the state_dict
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if any(k.startswith("aux_classifier.") for k in state):
            kwargs.setdefault("aux_loss", True)
        net = torchvision.models.get_model(arch, weights=None, **_without_backbone_weights(arch), **kwargs)
        net.load_state_dict(state, strict=True)
        return net
    if weights is None:
        return torchvision.models.get_model(arch, weights=None, **_without_backbone_weights(arch), **kwargs)
    try:
        return torchvision.models.get_model(arch, weights=weights, **kwargs)
    except Exception as exc:  # a corrupt or truncated cached file
        raise TaskUnavailable(f"{arch}: cannot load weights {weights.name} ({type(exc).__name__}: {exc})") from exc


def torch_versions() -> dict[str, str]:
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


class TorchvisionNetwork(LazyNetwork):
    """A task whose network comes from torchvision's weights API (or a local state dict), loaded lazily.

    Subclasses set ``arch``, ``weights``, ``checkpoint``, ``num_classes``,
    ``device_name`` and ``_network = None``. The module is dropped when the
    task is pickled to a worker process and loaded again there on first use.
    """

    arch: str
    weights: Any
    checkpoint: str | os.PathLike | None
    num_classes: int
    device_name: str
    name: str
    _network: Any

    def unavailable_reason(self) -> str | None:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            return "torchvision is not installed (pip install 'hmc-bench[learned]')"
        return torchvision_weights_problem(self.arch, self.weights, self.checkpoint)

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def build_network(self) -> Any:
        """The torch module (eval mode) from the hub cache or the local state dict."""
        kwargs = {} if self.weights is not None else {"num_classes": self.num_classes}
        return load_torchvision(self.arch, self.weights, self.checkpoint, **kwargs).eval().to(self.device)

    def describe(self) -> str:
        w = self.weights.name if self.weights is not None else (self.checkpoint or "random init")
        return f"{self.name} (torchvision {self.arch}, {w})"

    def versions(self) -> dict[str, str]:
        return torch_versions()

    def weight_files(self) -> dict[str, Path]:
        return torchvision_weight_files(self.weights, self.checkpoint)
