"""Complexity figures: MACs of a tiny network known by hand, under the modes codecs run in; peak memory."""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest

from bench.metrics.complexity import count_macs, kmac_per_pixel, peak_memory

torch = pytest.importorskip("torch")


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8 x 16 x 16 outputs, 3 * 3 * 3 MACs each
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 1, stride=2),  # 4 x 8 x 8 outputs, 8 MACs each
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),  # 256 x 10 MACs
    )


EXPECTED = 8 * 16 * 16 * 27 + 4 * 8 * 8 * 8 + 256 * 10


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_macs_of_a_known_network(mode):
    net, x = tiny(), torch.rand(1, 3, 16, 16)

    def run():
        if mode == "grad":
            return net(x)
        with getattr(torch, mode)():
            return net(x)

    out, macs = count_macs(run)
    assert macs == EXPECTED and out.shape == (1, 10)
    assert kmac_per_pixel(macs, 16 * 16) == EXPECTED / 1000 / 256


def test_code_outside_torch_counts_nothing():
    _, macs = count_macs(lambda: np.ones((64, 64)) @ np.ones((64, 64)))
    assert macs == 0  # numpy's work is not torch's: the harness reports None for methods that do not use torch
    assert kmac_per_pixel(None, 100) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resident-set high-water mark is read on Linux")
def test_peak_memory_sees_a_large_allocation():
    with peak_memory() as small:
        np.ones(10)
    with peak_memory() as large:
        # 64 MiB of fresh pages, each touched (a numpy array could reuse memory the process already holds)
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    assert small.mib is not None and large.mib is not None
    assert large.mib - small.mib > 48
