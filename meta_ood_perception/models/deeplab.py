"""DeepLabv3+ segmentation networks: DeepWV3Plus (WiderResNet-38 trunk, weight-compatible with the published
checkpoints) and a light DeepLabv3+ with a ResNet-18-style backbone for CPU use, tests and the embedded default.

All upsampling is bilinear with ``align_corners=True``, as in the research code. Outputs are logits at the input
resolution; apply softmax over dim 1 for class probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .wider_resnet import WiderResNetA2Trunk


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: image pooling, 1×1, and three dilated 3×3 branches, concatenated in that order.

    Keys: ``img_conv.{0,1}``, ``features.{0..3}.{0,1}`` (conv, BN).
    """

    def __init__(self, in_channels: int, channels: int = 256, rates: tuple[int, int, int] = (12, 24, 36)) -> None:
        super().__init__()
        # Registration order = the published state-dict order (features before img_conv); forward order differs.
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.features = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels, 1)] + [_conv_bn_relu(in_channels, channels, 3, r) for r in rates]
        )
        self.img_conv = _conv_bn_relu(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, 5·channels, h, w)."""
        pooled = _up(self.img_conv(self.img_pooling(x)), x.shape[2:])
        return torch.cat([pooled, *(branch(x) for branch in self.features)], dim=1)


class DeepWV3Plus(nn.Module):
    """DeepLabv3+ with a WiderResNet-38 A2 trunk (output stride 8), key-for-key the published DeepWV3Plus.

    137,103,936 parameters for 19 classes. The decoder works at ½ resolution (mod2 features). Input: (B, 3, H, W)
    normalized RGB (ImageNet mean/std); output: (B, num_classes, H, W) logits.
    """

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        trunk = WiderResNetA2Trunk()
        # Registered at the top level (not as ``trunk.*``) so the state-dict keys are the published ones.
        self.mod1, self.pool2, self.mod2, self.pool3 = trunk.mod1, trunk.pool2, trunk.mod2, trunk.pool3
        self.mod3, self.mod4, self.mod5, self.mod6, self.mod7 = (
            trunk.mod3, trunk.mod4, trunk.mod5, trunk.mod6, trunk.mod7,
        )  # fmt: skip
        self.aspp = ASPP(4096, 256, (12, 24, 36))
        self.bot_fine = nn.Conv2d(128, 48, 1, bias=False)
        self.bot_aspp = nn.Conv2d(1280, 256, 1, bias=False)
        self.final = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1, bias=False),
        )
        for m in self.final.modules():  # the research code initializes only the decoder head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, num_classes, H, W) logits."""
        m2 = self.mod2(self.pool2(self.mod1(x)))
        m7 = self.mod7(self.mod6(self.mod5(self.mod4(self.mod3(self.pool3(m2))))))
        aspp = self.bot_aspp(self.aspp(m7))
        dec = torch.cat([self.bot_fine(m2), _up(aspp, m2.shape[2:])], dim=1)
        return _up(self.final(dec), x.shape[2:])


class BasicBlock(nn.Module):
    """ResNet basic block (post-activation): 3×3 conv-BN-ReLU, 3×3 conv-BN, shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) → (B, cout, H/stride, W/stride)."""
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.down(x), inplace=True)


class LightDeepLabV3Plus(nn.Module):
    """DeepLabv3+ with a ResNet-18-style backbone of base width ``width`` (64 = ResNet-18), output stride 16 (ASPP
    rates 6, 12, 18) or 8 (layer 3 at stride 1 and layers 3–4 dilated by 2, ASPP rates 12, 24, 36: 4× the deep
    resolution for small objects, same parameters).

    Decoder at ¼ resolution (standard DeepLabv3+). Input (B, 3, H, W) normalized RGB with H and W multiples of 16;
    output (B, num_classes, H, W) logits.
    """

    def __init__(self, num_classes: int = 19, width: int = 32, output_stride: int = 16) -> None:
        super().__init__()
        if width < 4:
            raise ConfigError(f"width must be at least 4, got {width}")
        if output_stride not in (8, 16):
            raise ConfigError(f"output_stride must be 8 or 16, got {output_stride}")
        w = (width, 2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, w[0], 7, 2, 3, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        self.layer1 = nn.Sequential(BasicBlock(w[0], w[0]), BasicBlock(w[0], w[0]))
        self.layer2 = nn.Sequential(BasicBlock(w[0], w[1], 2), BasicBlock(w[1], w[1]))
        dense = output_stride == 8  # layer3 keeps the resolution and dilates instead (same weights, same keys)
        self.layer3 = nn.Sequential(
            BasicBlock(w[1], w[2], 1 if dense else 2), BasicBlock(w[2], w[2], dilation=2 if dense else 1)
        )
        d4 = 2 if dense else 1
        self.layer4 = nn.Sequential(BasicBlock(w[2], w[3], 1, dilation=d4), BasicBlock(w[3], w[3], dilation=d4))
        head = 4 * width
        self.aspp = ASPP(w[3], head, (12, 24, 36) if dense else (6, 12, 18))
        self.bot_aspp = _conv_bn_relu(5 * head, head, 1)
        self.bot_fine = _conv_bn_relu(w[0], width, 1)
        self.final = nn.Sequential(
            _conv_bn_relu(head + width, head, 3), _conv_bn_relu(head, head, 3), nn.Conv2d(head, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, num_classes, H, W) logits."""
        low = self.layer1(self.stem(x))
        deep = self.layer4(self.layer3(self.layer2(low)))
        aspp = self.bot_aspp(self.aspp(deep))
        dec = torch.cat([self.bot_fine(low), _up(aspp, low.shape[2:])], dim=1)
        return _up(self.final(dec), x.shape[2:])
