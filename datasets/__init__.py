"""Dataset adapters (installed as ``bench.datasets``)."""
