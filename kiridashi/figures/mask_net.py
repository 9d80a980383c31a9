"""The mask net (torch; training only - run time uses its ONNX export through onnxruntime).

A small U-Net that cuts one character out of a crop around its box: the figure net's encoder
layout (:mod:`kiridashi.figures.net`), with the decoder carried down to stride 2 so that hair
strands, fingers and the gaps between arm and body survive. Trained from scratch on crops of
synthetic scenes (:mod:`kiridashi.figures.crops`).

Input: ``N x 3 x H x W`` float32 RGB in [0, 255], H and W multiples of 32.
Output: ``N x 1 x H/2 x W/2`` float32 figure logits (every character in the crop counts).
"""

from __future__ import annotations

import torch
from torch import nn

from kiridashi.figures.net import Encoder, Up

OUTPUT_STRIDE = 2


class MaskNet(nn.Module):
    """See the module docstring; ``widths`` are the channels at strides 2, 4, 8, 16, 32."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64, 96), head: int = 16):
        super().__init__()
        w = widths
        self.encoder = Encoder(w)
        self.up4 = Up(w[4], w[3], w[3])
        self.up3 = Up(w[3], w[2], w[2])
        self.up2 = Up(w[2], w[1], w[1])
        self.up1 = Up(w[1], w[0], head)
        self.head = nn.Conv2d(head, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2, s4, s8, s16, s32 = self.encoder(x)
        y = self.up4(s32, s16)
        y = self.up3(y, s8)
        y = self.up2(y, s4)
        y = self.up1(y, s2)
        return self.head(y)
