"""ESPNet (Mehta et al., ECCV 2018; p=2, q=8) written here in torch: the architecture the authors' Cityscapes state
dict loads into strictly.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def _espnet_classes() -> Any:
    """ESPNet (Mehta et al., ECCV 2018; sacmehta/ESPNet ``Model.py``), written to load its state_dicts strictly.

    Built on first use so that importing this module does not need torch.
    """
    import torch
    from torch import nn

    class CBR(nn.Module):
        def __init__(self, n_in: int, n_out: int, k: int, stride: int = 1):
            super().__init__()
            self.conv = nn.Conv2d(n_in, n_out, k, stride=stride, padding=(k - 1) // 2, bias=False)
            self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
            self.act = nn.PReLU(n_out)

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class BR(nn.Module):
        def __init__(self, n_out: int):
            super().__init__()
            self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
            self.act = nn.PReLU(n_out)

        def forward(self, x):
            return self.act(self.bn(x))

    class C(nn.Module):
        def __init__(self, n_in: int, n_out: int, k: int, stride: int = 1, dilation: int = 1):
            super().__init__()
            pad = ((k - 1) // 2) * dilation
            self.conv = nn.Conv2d(n_in, n_out, k, stride=stride, padding=pad, bias=False, dilation=dilation)

        def forward(self, x):
            return self.conv(x)

    class ESPBlock(nn.Module):
        """Reduce, split, transform with dilations 1/2/4/8/16, hierarchical feature fusion, merge."""

        def __init__(self, n_in: int, n_out: int, add: bool = True, down: bool = False):
            super().__init__()
            n = n_out // 5
            n1 = n_out - 4 * n
            self.c1 = C(n_in, n, 3, 2) if down else C(n_in, n, 1, 1)
            self.d1 = C(n, n1, 3, 1, 1)
            self.d2 = C(n, n, 3, 1, 2)
            self.d4 = C(n, n, 3, 1, 4)
            self.d8 = C(n, n, 3, 1, 8)
            self.d16 = C(n, n, 3, 1, 16)
            self.down = down
            self.add = add and not down
            if down:  # DownSamplerB: bn and act directly on the block
                self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
                self.act = nn.PReLU(n_out)
            else:  # DilatedParllelResidualBlockB: a BR module named bn
                self.bn = BR(n_out)

        def forward(self, x):
            o = self.c1(x)
            d1, d2, d4, d8, d16 = self.d1(o), self.d2(o), self.d4(o), self.d8(o), self.d16(o)
            a1 = d2
            a2 = a1 + d4
            a3 = a2 + d8
            a4 = a3 + d16
            out = torch.cat([d1, a1, a2, a3, a4], 1)
            if self.down:
                return self.act(self.bn(out))
            if self.add:
                out = x + out
            return self.bn(out)

    class InputProjection(nn.Module):
        def __init__(self, times: int):
            super().__init__()
            self.pool = nn.ModuleList([nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times)])

        def forward(self, x):
            for pool in self.pool:
                x = pool(x)
            return x

    class Encoder(nn.Module):
        def __init__(self, classes: int, p: int, q: int):
            super().__init__()
            self.level1 = CBR(3, 16, 3, 2)
            self.sample1 = InputProjection(1)
            self.sample2 = InputProjection(2)
            self.b1 = BR(16 + 3)
            self.level2_0 = ESPBlock(16 + 3, 64, down=True)
            self.level2 = nn.ModuleList([ESPBlock(64, 64) for _ in range(p)])
            self.b2 = BR(128 + 3)
            self.level3_0 = ESPBlock(128 + 3, 128, down=True)
            self.level3 = nn.ModuleList([ESPBlock(128, 128) for _ in range(q)])
            self.b3 = BR(256)
            self.classifier = C(256, classes, 1, 1)

    class ESPNet(nn.Module):
        """ESPNet with its light decoder; ``classes`` includes the extra ignore/background class."""

        def __init__(self, classes: int = 20, p: int = 2, q: int = 8):
            super().__init__()
            self.encoder = Encoder(classes, p, q)
            self.level3_C = C(128 + 3, classes, 1, 1)
            self.br = nn.BatchNorm2d(classes, eps=1e-3)
            self.conv = CBR(16 + classes, classes, 3, 1)
            self.up_l3 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False))
            self.combine_l2_l3 = nn.Sequential(BR(2 * classes), ESPBlock(2 * classes, classes, add=False))
            self.up_l2 = nn.Sequential(
                nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False), BR(classes)
            )
            self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False)

        def forward(self, x):
            e = self.encoder
            out0 = e.level1(x)
            inp1 = e.sample1(x)
            inp2 = e.sample2(x)
            out0_cat = e.b1(torch.cat([out0, inp1], 1))
            out1_0 = e.level2_0(out0_cat)
            out1 = out1_0
            for layer in e.level2:
                out1 = layer(out1)
            out1_cat = e.b2(torch.cat([out1, out1_0, inp2], 1))
            out2_0 = e.level3_0(out1_cat)
            out2 = out2_0
            for layer in e.level3:
                out2 = layer(out2)
            out2_cat = e.b3(torch.cat([out2_0, out2], 1))
            out2_c = self.up_l3(self.br(e.classifier(out2_cat)))
            out1_c = self.level3_C(out1_cat)
            comb = self.up_l2(self.combine_l2_l3(torch.cat([out1_c, out2_c], 1)))
            feats = self.conv(torch.cat([comb, out0], 1))
            return self.classifier(feats)

    return ESPNet


def build_espnet(classes: int = 20, p: int = 2, q: int = 8) -> Any:
    """An ESPNet (encoder + light decoder) torch module with random weights."""
    return _espnet_classes()(classes, p, q)


#: ESPNet's Cityscapes input statistics, in OpenCV's BGR channel order (sacmehta/ESPNet VisualizeResults.py)
ESPNET_MEAN_BGR = (72.3923111, 82.90893555, 73.15840149)


ESPNET_STD_BGR = (45.3192215, 46.15289307, 44.91483307)


ESPNET_URL = "https://github.com/sacmehta/ESPNet/raw/master/pretrained/decoder/espnet_p_2_q_8.pth"
