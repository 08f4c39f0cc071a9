"""What the methods trained for a single machine task share: which task that is, and the error when none is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

    def task_name(self) -> str:
        if self.machine_task is None:
            raise MethodUnavailable(
                f"{self.name}: no machine task configured (run with task=<yolox-nano, espnet, ...>)"
            )
        return self.machine_task.name

    def served_tasks(self) -> list[str]:
        """The task the weights are trained for (the method's ``machine_task``)."""
        return [] if self.machine_task is None else [self.machine_task.name]
