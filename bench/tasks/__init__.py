"""Machine-vision tasks: a network that predicts, and an evaluator that scores predictions."""

from bench.tasks.base import FIDELITY, GROUND_TRUTH, Task, TaskUnavailable

__all__ = ["FIDELITY", "GROUND_TRUTH", "Task", "TaskUnavailable"]
