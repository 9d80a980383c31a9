"""The figure net (torch; training only - run time uses its ONNX export through onnxruntime).

A small U-Net-like fully convolutional net, trained from scratch (no pretrained weights).

Input: ``N x 3 x H x W`` float32 RGB in [0, 255], H and W multiples of
:data:`kiridashi.figures.decode.STRIDE_MULTIPLE` (32).
Output: ``N x 4 x H/4 x W/4`` float32 logits / log sizes at stride
:data:`kiridashi.figures.decode.OUTPUT_STRIDE` (4):

- channel 0 ``mask``: figure (character) pixel logit;
- channel 1 ``centre``: logit of a figure box centre (CenterNet-style heat map);
- channels 2, 3 ``log_w``, ``log_h``: log of the figure box width / height in output cells,
  read at the centre peaks.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = ("mask", "centre", "log_w", "log_h")


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Down(nn.Sequential):
    """Strided conv then a conv: half the resolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(conv(cin, cout, 2), conv(cout, cout))


class Up(nn.Module):
    """Nearest 2x upsampling, concatenated with the skip, two convs."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.body = nn.Sequential(conv(cin + cskip, cout), conv(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([self.up(x), skip], dim=1))


class Encoder(nn.Module):
    """RGB in [0, 255] -> features at strides 2, 4, 8, 16, 32 (``widths`` channels)."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        w = widths
        self.stem = nn.Sequential(conv(3, w[0], 2), conv(w[0], w[0]))
        self.down = nn.ModuleList(Down(a, b) for a, b in zip(w[:-1], w[1:], strict=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = [self.stem(x / 127.5 - 1.0)]
        for down in self.down:
            feats.append(down(feats[-1]))
        return tuple(feats)


class FigureNet(nn.Module):
    """See the module docstring; ``widths`` are the channels at strides 2, 4, 8, 16, 32."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 48, 64, 96), head: int = 32):
        super().__init__()
        w = widths
        self.encoder = Encoder(w)
        self.up3 = Up(w[4], w[3], w[3])
        self.up2 = Up(w[3], w[2], w[2])
        self.up1 = Up(w[2], w[1], head)
        self.head = nn.Sequential(conv(head, head), nn.Conv2d(head, len(CHANNELS), 1))
        with torch.no_grad():  # centre peaks are rare: start with a low prior (focal loss)
            self.head[-1].bias[1].fill_(-2.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, s4, s8, s16, s32 = self.encoder(x)
        y = self.up3(s32, s16)
        y = self.up2(y, s8)
        y = self.up1(y, s4)
        return self.head(y)
