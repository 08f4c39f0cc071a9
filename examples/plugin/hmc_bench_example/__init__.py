"""An example hmc-bench plugin: ``posterize-png`` (a codec), ``gradients`` (a dataset), ``dominant-channel`` (a task)
and ``mae-rgb`` (a metric). Install it next to hmc-bench and they appear in ``python -m bench list``."""
