"""WiderResNet-38 (A2 variant) trunk with pre-activation residual blocks, as used by DeepWV3Plus.

Module and parameter names follow the published checkpoints (``mod1.conv1``, ``mod2.block1.bn1.0``,
``mod2.block1.convs.conv1``, ``…proj_conv``) so that their state dicts load unchanged. Unlike the research code, nothing
here patches ``torch.nn.Dropout``: the bottleneck blocks use ``nn.Dropout2d`` explicitly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import ConfigError


def bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU as one module (state-dict keys ``<name>.0.*``)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block: BN+ReLU on the input, conv branch, shortcut (1×1 projection if needed).

    ``channels`` of length 2 gives a basic block (3×3, BN+ReLU, 3×3); of length 3 a bottleneck (1×1, BN+ReLU,
    3×3, BN+ReLU, [dropout], 1×1). No convolution has a bias.
    """

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        stride: int = 1,
        dilation: int = 1,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if len(channels) not in (2, 3):
            raise ConfigError(f"channels must have 2 or 3 entries, got {channels}")
        self.bn1 = bn_relu(in_channels)
        layers: list[tuple[str, nn.Module]]
        if len(channels) == 2:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 3, stride, dilation, dilation=dilation, bias=False)),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, 1, dilation, dilation=dilation, bias=False)),
            ]
        else:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 1, stride, 0, bias=False)),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, 1, dilation, dilation=dilation, bias=False)),
                ("bn3", bn_relu(channels[1])),
            ]
            if dropout is not None:
                layers.append(("dropout", nn.Dropout2d(dropout)))
            layers.append(("conv3", nn.Conv2d(channels[1], channels[2], 1, 1, 0, bias=False)))
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv: nn.Conv2d | None = None
        if stride != 1 or in_channels != channels[-1]:
            self.proj_conv = nn.Conv2d(in_channels, channels[-1], 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) → (B, out, H/stride, W/stride)."""
        pre: torch.Tensor = self.bn1(x)
        # With a projection the shortcut starts from the activated input, otherwise from the raw input.
        shortcut: torch.Tensor = self.proj_conv(pre) if self.proj_conv is not None else x
        out: torch.Tensor = self.convs(pre)
        return out + shortcut


#: Blocks per stage and channel specs of WiderResNet-38 (stages mod2 … mod7).
WRN38_STRUCTURE = (3, 3, 6, 3, 1, 1)
WRN38_CHANNELS: tuple[tuple[int, ...], ...] = (
    (128, 128),
    (256, 256),
    (512, 512),
    (512, 1024),
    (512, 1024, 2048),
    (1024, 2048, 4096),
)


class WiderResNetA2Trunk(nn.Module):
    """mod1 … mod7 with pool2 and pool3 of WiderResNet-38 A2 with ``dilation=True`` (output stride 8).

    Stage strides and dilations (of a 512×1024 input): mod1 1×, pool2 ½, mod2, pool3 ¼, mod3, mod4 ⅛ (first block
    stride 2), mod5 dilation 2, mod6 and mod7 dilation 4 with channel dropout 0.3 / 0.5 before their last conv.
    """

    mod2: nn.Sequential
    mod3: nn.Sequential
    mod4: nn.Sequential
    mod5: nn.Sequential
    mod6: nn.Sequential
    mod7: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.mod1 = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 64, 3, 1, 1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for stage, (n_blocks, channels) in enumerate(zip(WRN38_STRUCTURE, WRN38_CHANNELS, strict=True)):
            dilation = 1 if stage < 3 else (2 if stage == 3 else 4)
            dropout = {4: 0.3, 5: 0.5}.get(stage)
            blocks = []
            for block in range(n_blocks):
                stride = 2 if stage == 2 and block == 0 else 1
                blocks.append(
                    (f"block{block + 1}", IdentityResidualBlock(in_channels, channels, stride, dilation, dropout))
                )
                in_channels = channels[-1]
            self.add_module(f"mod{stage + 2}", nn.Sequential(OrderedDict(blocks)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → (mod2 features (B, 128, H/2, W/2), mod7 features (B, 4096, H/8, W/8))."""
        m2 = self.mod2(self.pool2(self.mod1(x)))
        m7 = self.mod7(self.mod6(self.mod5(self.mod4(self.mod3(self.pool3(m2))))))
        return m2, m7
