"""A corpus of ``timm`` image models, exported as users export them, for ``onnx2x torch``.

The architectures a corpus sweep ran through the CLI with default flags (every one converted and
matched its eager module within float32 rounding), one per op family: residual networks with
split attention (ResNeSt), Res2Net's hierarchical splits, squeeze-excitation, SiLU/hard-swish
mobile blocks, Ghost and RepVGG/MobileOne re-parameterisable blocks, mixed kernels (MixNet), DLA
and DPN aggregation, CSP stages, HRNet's multi-resolution fusion, Inception, Xception, NFNet's
weight standardisation in the graph, TResNet's space-to-depth, ConvNeXt-V2's GRN, EdgeNeXt,
EfficientFormer, FastViT, MobileViT, PoolFormer, MLP-Mixer, ResMLP, DeiT, CaiT, CoaT, LeViT, PiT,
Twins, XCiT, CrossViT, Swin and MaxViT windows, BoTNet's relative-position attention, Sequencer's
LSTMs.

Each model is built in its own subprocess (``python -m tests.support.timm_corpus build NAME
FOLDER``): the installed torchvision cannot load its C++ ops beside this torch, and timm imports
``torchvision.ops.misc`` (for FrozenBatchNorm2d, which no model here uses) at import time, so the
subprocess stubs torchvision, a stub the test process (where transformers must believe torchvision
absent) never sees. The subprocess writes ``NAME.onnx`` (TorchScript exporter, opset 17, dynamic
batch) and ``NAME.npz``: an input at batch 3 (the export's is 2), the eager module's output on
it, the output's spread between two inputs (a reference that hardly depends on its input proves
nothing) and its float32 rounding error (the largest difference from the same module in float64:
deep networks with realistic statistics amplify rounding to 1e-4 of their output's scale, which
any other float32 implementation, the converted module included, is entitled to as well).

Weights are timm's seeded initialisation made realistic: every parameter timm initialises to one
constant (zero heads, layer scales, biases) gets seeded noise around that constant, so that no
branch is silent; BatchNorm affine parameters leave the identity and its statistics are measured
on random images, as training leaves them.
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# name -> (timm model, image side, keyword arguments shrinking it)
MODELS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "resnest14d": ("resnest14d", 64, {}),
    "res2net50_14w_8s": ("res2net50_14w_8s", 64, {}),
    "seresnext26d_32x4d": ("seresnext26d_32x4d", 64, {}),
    "efficientnet_b0": ("efficientnet_b0", 64, {}),
    "mobilenetv3_small_100": ("mobilenetv3_small_100", 64, {}),
    "ghostnetv2_100": ("ghostnetv2_100", 64, {}),
    "mixnet_s": ("mixnet_s", 64, {}),
    "dla34": ("dla34", 64, {}),
    "dpn48b": ("dpn48b", 64, {}),
    "cspdarknet53": ("cspdarknet53", 64, {}),
    "hrnet_w18_small": ("hrnet_w18_small", 64, {}),
    "inception_v3": ("inception_v3", 96, {}),
    "xception41": ("xception41", 64, {}),
    "dm_nfnet_f0": ("dm_nfnet_f0", 64, {}),
    "repvgg_a0": ("repvgg_a0", 64, {}),
    "mobileone_s0": ("mobileone_s0", 64, {}),
    "tresnet_m": ("tresnet_m", 64, {}),
    "convnextv2_atto": ("convnextv2_atto", 64, {}),
    "edgenext_xx_small": ("edgenext_xx_small", 64, {}),
    "efficientformer_l1": ("efficientformer_l1", 224, {}),
    "fastvit_t8": ("fastvit_t8", 64, {}),
    "mobilevit_xxs": ("mobilevit_xxs", 64, {}),
    "poolformer_s12": ("poolformer_s12", 64, {}),
    "mixer_s16_224": ("mixer_s16_224", 64, {"img_size": 64}),
    "resmlp_12_224": ("resmlp_12_224", 64, {"img_size": 64}),
    "deit_tiny_distilled": ("deit_tiny_distilled_patch16_224", 64, {"img_size": 64, "depth": 2}),
    "cait_xxs24_224": ("cait_xxs24_224", 64, {"img_size": 64, "depth": 2}),
    "coat_tiny": ("coat_tiny", 64, {"img_size": 64}),
    "levit_128s": ("levit_128s", 64, {"img_size": 64}),
    "pit_ti_224": ("pit_ti_224", 64, {"img_size": 64}),
    "twins_pcpvt_small": ("twins_pcpvt_small", 64, {"img_size": 64, "depths": (1, 1, 1, 1)}),
    "xcit_nano_12_p16_224": ("xcit_nano_12_p16_224", 64, {"img_size": 64, "depth": 2}),
    "crossvit_tiny_240": ("crossvit_tiny_240", 240, {}),
    "swin_tiny": ("swin_tiny_patch4_window7_224", 64, {"img_size": 64, "window_size": 4, "depths": (1, 1, 2, 1)}),
    "maxvit_tiny": ("maxvit_tiny_tf_224", 128, {"img_size": 128}),
    "botnet26t": ("botnet26t_256", 64, {"img_size": 64}),
    "sequencer2d_s": ("sequencer2d_s", 64, {}),
}

EXPORT_BATCH, CHECK_BATCH = 2, 3


class _AnyAttribute(type):
    """Classes whose every class attribute is another such class (``InterpolationMode.NEAREST``)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyAttribute(name, (), {"__init__": lambda self, *a, **k: None})


class _Stub(types.ModuleType):
    """A module whose every attribute is a do-nothing class (timm's data utilities reference
    torchvision's transforms at import; nothing here calls them)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyAttribute(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        if module.__name__ == "torchvision.ops.misc":
            import torch

            class FrozenBatchNorm2d(torch.nn.BatchNorm2d):  # the name timm imports; unused by these models
                pass

            module.FrozenBatchNorm2d = FrozenBatchNorm2d


def _import_timm():
    """``timm`` with torchvision stubbed (call only in the build subprocess)."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _StubFinder())
    import timm

    return timm


def _realistic_weights(model, side: int) -> None:
    """Constant-initialised parameters given seeded noise, BatchNorm affine parameters off the
    identity, then BatchNorm statistics measured on a batch of random images (one train-mode pass
    with momentum 1), as training would have left them (module doc)."""
    import torch

    gen = torch.Generator().manual_seed(1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for norm in norms:
            if norm.affine:
                norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=gen))
                norm.bias.copy_(0.1 * torch.randn(norm.bias.shape, generator=gen))
        if norms:
            momenta = [norm.momentum for norm in norms]
            for norm in norms:
                norm.momentum = 1.0
            model.train()
            model(torch.randn(8, 3, side, side, generator=gen))
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
    model.eval()


def build(name: str, folder: Path) -> None:
    """Write ``NAME.onnx`` and ``NAME.npz`` into ``folder`` (see the module docstring)."""
    import numpy as np
    import torch

    timm = _import_timm()
    arch, side, kwargs = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=10, **kwargs).eval()
    _realistic_weights(model, side)
    gen = torch.Generator().manual_seed(3)
    export_input = torch.randn(EXPORT_BATCH, 3, side, side, generator=gen)
    check_input = torch.randn(CHECK_BATCH, 3, side, side, generator=gen)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (export_input,), str(folder / f"{name}.onnx"), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        output = model(check_input)
        exact = model.double()(check_input.double())
    spread = float((output[0] - output[1]).abs().max() / output.abs().max())
    rounding = float((output.double() - exact).abs().max())
    np.savez(folder / f"{name}.npz", input=check_input.numpy(), output=output.numpy(), spread=spread,
             rounding=rounding)


def build_in_subprocess(name: str, folder: Path, timeout: float = 600) -> tuple[Path, Path]:
    """:func:`build` in a fresh interpreter; (``NAME.onnx``, ``NAME.npz``)."""
    proc = subprocess.run([sys.executable, "-m", "tests.support.timm_corpus", "build", name, str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"building {name} failed:\n{proc.stderr[-3000:]}")
    return folder / f"{name}.onnx", folder / f"{name}.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one timm corpus model (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write NAME.onnx and NAME.npz into FOLDER")
    b.add_argument("name", choices=sorted(MODELS))
    b.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    build(args.name, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
