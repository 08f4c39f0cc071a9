"""What the methods trained for a single machine task share: which task that is, and the error when none is set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.methods.base import MethodUnavailable

if TYPE_CHECKING:
    from bench.tasks.base import Task


class OneMachineTask:
    """Mixin of a method whose machine stream (or head, or base layer) is trained for ``machine_task``.

    A run that names no ``task=`` measures :meth:`served_tasks`; without a configured task the method cannot
    say what its machine stream is for, and :meth:`task_name` says how to give one.
    """

    name: str
    machine_task: Task | None
    split_network: Any  # the methods that cut their task network in two (``task_split``) define it

    def task_name(self) -> str:
        if self.machine_task is None:
            raise MethodUnavailable(
                f"{self.name}: no machine task configured (run with task=<yolox-nano, espnet, ...>)"
            )
        return self.machine_task.name

    def served_tasks(self) -> list[str]:
        """The task the weights are trained for (the method's ``machine_task``)."""
        return [] if self.machine_task is None else [self.machine_task.name]

    def task_unavailable(self, split: bool = False) -> str | None:
        """Why the machine task (and, with ``split``, the method's ``split_network`` cut from it) cannot run
        here; None when it can."""
        try:
            name = self.task_name()
        except MethodUnavailable as exc:
            return str(exc)
        why = self.machine_task.unavailable_reason() or (self.split_network.unavailable_reason() if split else None)
        return f"{self.name}: machine task {name!r} cannot run: {why}" if why else None
