"""Frozen means frozen: digests of every tensor of the modules a stage must not change, checked after the stage, and
the parameters a stage may train.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.training.recipe import FrozenModuleError, Stage, TrainingError

if TYPE_CHECKING:
    import torch


def module_digests(module: torch.nn.Module) -> dict[str, str]:
    """SHA-256 of every parameter and buffer, by name: equal digests = bit-identical weights."""
    import torch

    out = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def freeze(frozen: Mapping[str, torch.nn.Module]) -> dict[str, dict[str, str]]:
    """Turn off gradients of ``frozen`` and return their digests (to verify after the stage)."""
    for module in frozen.values():
        for p in module.parameters():
            p.requires_grad_(False)
    return {name: module_digests(module) for name, module in frozen.items()}


def verify_frozen(stage: str, frozen: Mapping[str, torch.nn.Module], digests: Mapping[str, Mapping[str, str]]) -> None:
    """Raise :class:`FrozenModuleError` unless every frozen module is bit-identical and gradient-free."""
    problems = []
    for name, module in frozen.items():
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        with_grad = [n for n, p in module.named_parameters() if p.grad is not None and bool(p.grad.ne(0).any())]
        now = module_digests(module)
        changed = [n for n, d in now.items() if digests.get(name, {}).get(n) != d]
        if trainable:
            problems.append(f"{name}: requires_grad was turned back on for {_few(trainable)}")
        if with_grad:
            problems.append(f"{name}: gradients reached {_few(with_grad)}")
        if changed:
            problems.append(f"{name}: weights changed: {_few(changed)}")
    if problems:
        raise FrozenModuleError(f"stage {stage!r} declares these modules frozen, but " + "; ".join(problems))


def _few(names: Sequence[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def trained_parameters(
    model: torch.nn.Module, stage: Stage
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(main, aux) parameters of the submodules ``stage.trains``; aux = CompressAI's ``quantiles``."""
    seen: set[int] = set()
    main, aux = [], []
    frozen_ids = {id(p): name for name, m in stage.frozen.items() for p in m.parameters()}
    if not stage.trains:
        raise TrainingError(f"stage {stage.name!r} trains nothing (trains is empty)")
    for sub in stage.trains:
        try:
            module = model.get_submodule(sub) if sub else model
        except AttributeError as exc:
            raise TrainingError(f"stage {stage.name!r}: the model has no submodule {sub!r} ({exc})") from None
        for pname, p in module.named_parameters():
            if id(p) in frozen_ids:
                raise FrozenModuleError(
                    f"stage {stage.name!r} trains {sub or 'the model'}.{pname}, a parameter of the frozen module "
                    f"{frozen_ids[id(p)]!r}"
                )
            if id(p) in seen:
                continue
            seen.add(id(p))
            (aux if pname.endswith("quantiles") else main).append(p)
    if not main:
        raise TrainingError(f"stage {stage.name!r}: {list(stage.trains)} have no parameters to train")
    return main, aux
