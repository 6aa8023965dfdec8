"""Small hand-built architectures as people write them in PyTorch, exported by ``torch.onnx.export``.

The forward-latency benchmark (``benchmarks/bench_small_graphs.py``) compares each converted
module with the eager module it came from; ``tests/test_small_nets.py`` checks that the
conversion computes what the eager module computes. Each net is seeded and small enough to
export and run in a second: recurrent layers (bidirectional LSTM, GRU), a ConvNeXt block (7x7
depthwise convolution, channels-first LayerNorm written out as ConvNeXt does, with ``pow(2)``),
a ResNet basic block, a MobileNetV2 inverted residual, a transformer MLP, a dilated 1-D
temporal convolution stack and a diffusion UNet/VAE decoder stage (GroupNorm, SiLU, 2x nearest
upsampling, transposed convolution) on images of any size.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class BiLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class GRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(32, 64, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class ChannelsFirstLayerNorm(nn.Module):
    """ConvNeXt's LayerNorm over the channels of an NCHW tensor, written out (with ``pow(2)``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int = 48) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.stem_norm = ChannelsFirstLayerNorm(dim)
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_norm(self.stem(x))
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ResNetBlock(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class InvertedResidual(nn.Module):
    def __init__(self, channels: int = 24, expand: int = 6) -> None:
        super().__init__()
        hidden = channels * expand
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU6())
        self.block = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return x + self.block(x)


class TransformerMLP(nn.Module):
    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class TemporalConvNet(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in (1, 2, 4, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + F.relu(conv(x))
        return x


class UNetUpBlock(nn.Module):
    """A diffusion UNet / VAE decoder stage, exported with a symbolic image size as those models are."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.up = nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        x = x + self.conv2(F.silu(self.norm2(h)))
        return self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# name -> (module class, input shape at batch 1); the first axis is the batch
NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lstm_bi": (BiLSTM, (1, 16, 32)),
    "gru": (GRU, (1, 16, 32)),
    "convnext_block": (ConvNeXtBlock, (1, 3, 64, 64)),
    "resnet_block": (ResNetBlock, (1, 3, 32, 32)),
    "inverted_residual": (InvertedResidual, (1, 3, 64, 64)),
    "transformer_mlp": (TransformerMLP, (1, 16, 256)),
    "tcn": (TemporalConvNet, (1, 32, 128)),
    "unet_up_block": (UNetUpBlock, (1, 64, 24, 24)),
}
# exported axes besides the batch: the recurrent nets' time, the UNet's image size (its output is 4x)
_AXES = {"lstm_bi": {1: "time"}, "gru": {1: "time"}, "unet_up_block": {2: "height", 3: "width"}}
_OUTPUT_AXES = {"unet_up_block": {2: "out_height", 3: "out_width"}}


def build(name: str) -> nn.Module:
    """The net, seeded, in eval mode, with BatchNorm statistics away from their defaults (an
    identity BatchNorm would hide a wrong folding)."""
    factory, _ = NETS[name]
    torch.manual_seed(0)
    net = factory()
    gen = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
        if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            module.weight.data.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=gen))
            module.bias.data.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
    return net.eval()


def sample(name: str, batch: int, gen: torch.Generator) -> torch.Tensor:
    shape = NETS[name][1]
    return torch.randn((batch,) + shape[1:], generator=gen)


def export(net: nn.Module, name: str, path: Path, opset: int = 17) -> Path:
    """TorchScript export with a dynamic batch (and the axes of ``_AXES``)."""
    axes = {0: "batch", **_AXES.get(name, {})}
    output_axes = {0: "batch", **_OUTPUT_AXES.get(name, _AXES.get(name, {}))}
    x = sample(name, 2, torch.Generator().manual_seed(2))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamo=False, dynamic_axes={"x": axes, "y": output_axes})
    return path
