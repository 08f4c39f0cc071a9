"""Training: the loop learned methods share, codec training, training data, and shipping weights."""


def __getattr__(name: str) -> object:
    """Names of the former module ``bench.training`` (scripts and configs written before it became a package)."""
    from bench.compat import forward

    return forward("bench.training", name)
