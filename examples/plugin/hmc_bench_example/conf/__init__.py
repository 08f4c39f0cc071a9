"""Config groups found by hmc-bench through the ``hmc_bench.configs`` entry point."""
