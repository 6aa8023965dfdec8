"""The embedded demo: a small MXNet network with the cases MXNet's own exporter got wrong.

Built in code with seeded random weights (no download, no file outside a temporary folder):

- PReLU after a Convolution (per-channel slope on NCHW) and after a FullyConnected (2-D input);
- SliceChannel whose two outputs feed different branches;
- Pooling with ``pooling_convention='full'`` (ceil rounding of the output size).

``roundtrip demo`` saves it as symbol JSON + params, converts MXNet -> ONNX -> PyTorch and
compares all forms on one input.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from common.verify.report import RoundTripReport

INPUT_NAME = "data"
INPUT_SHAPE = (1, 3, 24, 24)
DEMO_TOLERANCE = 1e-5  # rtol and atol: the demo's outputs are O(1), so both read as "1e-5"
PREFIX = "demo"


def build_symbol(mx: Any) -> Any:
    """The demo network as an MXNet symbol with two outputs (class probabilities and a box)."""
    sym = mx.sym
    data = sym.Variable(INPUT_NAME)
    conv1 = sym.Convolution(data, kernel=(3, 3), num_filter=8, name="conv1")
    prelu1 = sym.LeakyReLU(conv1, act_type="prelu", name="prelu1")
    pool1 = sym.Pooling(prelu1, kernel=(3, 3), stride=(2, 2), pool_type="max", pooling_convention="full",
                        name="pool1")  # 22x22 -> 11x11 ('valid' would give 10x10)
    halves = sym.SliceChannel(pool1, num_outputs=2, axis=1, name="slice")
    # branch 1: conv -> PReLU -> FC -> PReLU -> FC -> softmax
    conv2 = sym.Convolution(halves[0], kernel=(3, 3), num_filter=6, name="conv2")
    prelu2 = sym.LeakyReLU(conv2, act_type="prelu", name="prelu2")
    fc1 = sym.FullyConnected(sym.Flatten(prelu2, name="flat1"), num_hidden=16, name="fc1")
    prelu3 = sym.LeakyReLU(fc1, act_type="prelu", name="prelu3")
    fc2 = sym.FullyConnected(prelu3, num_hidden=4, name="fc2")
    prob = sym.softmax(fc2, axis=1, name="prob")
    # branch 2: average pooling of the other half ('full' convention too) -> FC
    pool2 = sym.Pooling(halves[1], kernel=(2, 2), stride=(2, 2), pool_type="avg", pooling_convention="full",
                        name="pool2")  # 11x11 -> 6x6
    box = sym.FullyConnected(sym.Flatten(pool2, name="flat2"), num_hidden=4, name="box")
    return sym.Group([prob, box])


def build_params(mx: Any, symbol: Any, seed: int = 0) -> dict[str, Any]:
    """Seeded weights scaled like a trained net's (He init), PReLU slopes in [0.05, 0.3]."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, _ = symbol.infer_shape(**{INPUT_NAME: INPUT_SHAPE})
    params = {}
    for name, shape in zip(symbol.list_arguments(), arg_shapes):
        if name == INPUT_NAME:
            continue
        if name.endswith("_gamma"):
            value = rng.uniform(0.05, 0.3, size=shape)
        elif name.endswith("_bias"):
            value = rng.uniform(-0.1, 0.1, size=shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
            if name == "fc2_weight":  # small logits: probabilities that are not all 0 or 1
                value *= 0.25
        params[name] = mx.nd.array(value.astype(np.float32))
    return params


def write_model(directory: "str | Path", seed: int = 0) -> tuple[Path, Path]:
    """Save the demo as ``demo-symbol.json`` and ``demo-0000.params`` in ``directory``."""
    from common.verify.runners import import_mxnet

    mx = import_mxnet()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbol = build_symbol(mx)
    params = build_params(mx, symbol, seed)
    symbol_path = directory / f"{PREFIX}-symbol.json"
    params_path = directory / f"{PREFIX}-0000.params"
    symbol.save(str(symbol_path))
    mx.nd.save(str(params_path), {f"arg:{k}": v for k, v in params.items()})
    return symbol_path, params_path


def run_demo(*, seed: int = 0, back_to_onnx: bool = False, rtol: Optional[float] = DEMO_TOLERANCE,
             atol: Optional[float] = DEMO_TOLERANCE, save_model: "str | Path | None" = None,
             exporter: str = "auto") -> RoundTripReport:
    """Build, save, convert and compare the demo network; returns the report."""
    from .pipeline import mxnet_roundtrip

    with tempfile.TemporaryDirectory(prefix="roundtrip-demo-") as tmp:
        folder = Path(save_model) if save_model is not None else Path(tmp)
        symbol_path, params_path = write_model(folder, seed)
        return mxnet_roundtrip(symbol_path, params_path, input_shapes={INPUT_NAME: INPUT_SHAPE}, seed=seed,
                               back_to_onnx=back_to_onnx, rtol=rtol, atol=atol, exporter=exporter,
                               title="demo network (PReLU after Convolution and FullyConnected, "
                                     "SliceChannel, Pooling 'full')")
