"""hmc-bench: benchmark harness for human-machine collaborative compression."""

from bench import resolvers

__version__ = "0.1.0"

resolvers.register()
