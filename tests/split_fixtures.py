"""Small task networks of the shapes the methods cut (YOLOX-like ONNX detector, ESPNet), made here, seeded.

The real YOLOX-Nano and ESPNet weights are shared assets; these stand in for
them in the default tests: the same kinds of graph (a CSP stage whose output
the neck reads again, heads at strides 8 / 16 / 32; ESPNet's exact
architecture with random weights), so the same cuts and code paths run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bench.tasks.detection import OnnxDetector
from bench.tasks.networks.espnet import build_espnet
from bench.tasks.segmentation import ESPNetSegmenter


class TinyCspYolox(torch.nn.Module):
    """YOLOX's layout in miniature: fed BGR 0..255, a CSP stage at stride 8 whose output the neck reads again,
    rows of strides 8, 16, 32 (row-major), columns tx, ty, tw, th, obj, 80 classes (obj and classes sigmoid-ed)."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.stem = conv(3, 8, 3, stride=2, padding=1)
        self.dark2 = conv(8, 8, 3, stride=2, padding=1)
        self.dark3_down = conv(8, 16, 3, stride=2, padding=1)
        self.csp_a, self.csp_b, self.csp_out = conv(16, 8, 1), conv(16, 8, 3, padding=1), conv(16, 16, 1)
        self.dark4 = conv(16, 16, 3, stride=2, padding=1)
        self.dark5 = conv(16, 16, 3, stride=2, padding=1)
        self.head = conv(16, 85, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.nn.functional.silu
        f = act(self.dark2(act(self.stem(x / 255.0))))
        f = act(self.dark3_down(f))
        f8 = act(self.csp_out(torch.cat([act(self.csp_a(f)), act(self.csp_b(f))], 1)))
        f16 = act(self.dark4(f8))
        f32 = act(self.dark5(f16))
        p16 = f16 + torch.nn.functional.interpolate(f32, scale_factor=2.0, mode="nearest")
        p8 = f8 + torch.nn.functional.interpolate(p16, scale_factor=2.0, mode="nearest")  # the neck reads f8
        rows = torch.cat([self.head(f).flatten(2) for f in (p8, p16, f32)], 2).transpose(1, 2)
        return torch.cat([rows[..., :4], torch.sigmoid(rows[..., 4:])], -1)


def tiny_yolox_task(folder: Path, size: int = 64) -> OnnxDetector:
    """A :class:`TinyCspYolox` exported to ONNX (batch 1, as YOLOX's export) and wrapped as the YOLOX task is."""
    torch.manual_seed(0)
    net = TinyCspYolox().eval()
    path = folder / "tiny_csp_yolox.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated (the other one needs onnxscript)
        torch.onnx.export(
            net, (torch.rand(1, 3, size, size),), str(path), dynamo=False, opset_version=17, input_names=["images"]
        )
    # no cap on detections: an untrained head has many near-equal scores, and a cap would cut ties
    return OnnxDetector("tiny-yolox", model=path, decoder="yolox", input_size=size, max_detections=10_000)


def tiny_espnet_task(folder: Path, input_size: tuple[int, int] = (64, 96)) -> ESPNetSegmenter:
    """ESPNet (p=1, q=1) with seeded random weights in a state-dict file, loaded by the ESPNet task."""
    torch.manual_seed(0)
    net = build_espnet(20, 1, 1)
    with torch.no_grad():
        for m in net.modules():  # spread the batch-norm statistics so that classes vary over the image
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = folder / "espnet_tiny.pth"
    torch.save(net.state_dict(), path)
    return ESPNetSegmenter("espnet-tiny", checkpoint=path, p=1, q=1, input_size=input_size, device="cpu")


__all__ = ["TinyCspYolox", "tiny_espnet_task", "tiny_yolox_task"]
