"""hmc-bench: benchmark harness for human-machine collaborative compression."""

__version__ = "0.1.0"
