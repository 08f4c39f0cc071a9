"""Quality metrics: what is measured on a decoded image or clip against its original (and how to read it)."""


def __getattr__(name: str) -> object:
    """Names of the former module ``bench.metrics`` (scripts and configs written before it became a package)."""
    from bench.compat import forward

    return forward("bench.metrics", name)
