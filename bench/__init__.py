"""hmc-bench: benchmark harness for human-machine collaborative compression."""

from bench import compat, resolvers

__version__ = "0.1.0"

compat.install()
resolvers.register()
