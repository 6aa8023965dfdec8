"""Small models and fixtures for the verification, locator and round-trip tests.

- :func:`small_cnn`: an ONNX CNN (Conv, LeakyRelu, MaxPool, Conv, GlobalAveragePool, Flatten,
  Gemm, Softmax) with seeded weights;
- :func:`small_mxnet_net`: an MXNet symbol + params written to a folder;
- :func:`wrong_converter` / :func:`wrong_translation`: install a deliberately wrong converter
  (onnx2x) or translation (MXNet exporter) for the duration of a ``with`` block.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
REPO = Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    return Path(os.environ.get("X2ONNX_MODELS_DIR", REPO.parent / "shared" / "models"))


def small_cnn(seed: int = 0, *, alpha: float = 0.2, batch: "int | str" = 1) -> onnx.ModelProto:
    """x (N,3,8,8) -> conv -> lrelu -> pool -> conv2 -> gap -> flat -> fc -> prob (N,5)."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, size=shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "conv_W", "conv_B"], ["conv_out"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["conv_out"], ["lrelu_out"], name="lrelu", alpha=alpha),
        helper.make_node("MaxPool", ["lrelu_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool_out", "conv2_W"], ["conv2_out"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["conv2_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat_out"], name="flat"),
        helper.make_node("Gemm", ["flat_out", "fc_W", "fc_B"], ["fc_out"], name="fc", transB=1),
        helper.make_node("Softmax", ["fc_out"], ["prob"], name="softmax", axis=1),
    ]
    inits = [init("conv_W", 6, 3, 3, 3), init("conv_B", 6, scale=0.1), init("conv2_W", 8, 6, 3, 3),
             init("fc_W", 5, 8), init("fc_B", 5, scale=0.1)]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, 5]),
         helper.make_tensor_value_info("fc_out", TensorProto.FLOAT, [batch, 5])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def small_mxnet_net(folder: Path, seed: int = 0, *, batchnorm: bool = False) -> tuple[Path, Path, tuple[int, ...]]:
    """data (1,3,10,10) -> conv1 [-> bn1] -> relu1 (Activation) -> conv2 -> fc; saved as
    net-symbol.json/net-0000.params. ``batchnorm`` adds a BatchNorm the simplifier folds into conv1."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    data = mx.sym.Variable("data")
    conv1 = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv1")
    if batchnorm:
        conv1 = mx.sym.BatchNorm(conv1, fix_gamma=False, name="bn1")
    relu1 = mx.sym.Activation(conv1, act_type="relu", name="relu1")
    conv2 = mx.sym.Convolution(relu1, kernel=(3, 3), num_filter=4, name="conv2")
    fc = mx.sym.FullyConnected(mx.sym.Flatten(conv2, name="flat"), num_hidden=3, name="fc")
    shape = (1, 3, 10, 10)
    return write_checkpoint(fc, shape, folder, "net", seed=seed, std=0.3) + (shape,)


def write_checkpoint(sym, shape: tuple[int, ...], folder: Path, name: str, *, seed: int, std: float,
                     inputs: tuple[str, ...] = ("data",)) -> tuple[Path, Path]:
    """``sym`` saved as NAME-symbol.json/NAME-0000.params with seeded weights: arguments
    N(0, std), auxiliary states (BatchNorm statistics) U(0.5, 1.5); ``inputs`` get none."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    rng = np.random.default_rng(seed)
    params = {f"arg:{n}": mx.nd.array(rng.normal(0, std, size=s).astype(np.float32))
              for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}
    params.update({f"aux:{n}": mx.nd.array(rng.uniform(0.5, 1.5, size=s).astype(np.float32))
                   for n, s in zip(sym.list_auxiliary_states(), aux_shapes)})
    folder.mkdir(parents=True, exist_ok=True)
    sym_path, params_path = folder / f"{name}-symbol.json", folder / f"{name}-0000.params"
    sym.save(str(sym_path))
    mx.nd.save(str(params_path), params)
    return sym_path, params_path


@contextlib.contextmanager
def wrong_converter(op_type: str, fn: Callable[[Any], Any], *, since: int = OPSET) -> Iterator[None]:
    """Register ``fn`` as the onnx2x converter of ``op_type`` from opset ``since``; removed afterwards."""
    from onnx2x.torch import registry

    registry._ensure_loaded()
    registry.converter(op_type, since=since)(fn)
    try:
        yield
    finally:
        entry = registry._REGISTRY[("", op_type)]
        i = entry.fns.index(fn)
        del entry.versions[i], entry.fns[i], entry.foldable[i]


@contextlib.contextmanager
def wrong_translation(op_name: str, fn: Callable[..., Any], *, since: int = 13) -> Iterator[None]:
    """Install ``fn`` as the MXNet exporter's translation of ``op_name`` (through
    ``mx2onnx_patches.translations``) for the ``with`` block; the previous state is restored."""
    import mx2onnx_patches
    from mx2onnx_patches import translations as tr

    mx2onnx_patches.import_op_modules()  # theirs first: a later registration wins at the same opset
    was_installed = tr.is_installed()
    tr.uninstall()
    before = len(tr.registered())
    tr.translation(op_name, since=since)(fn)
    entry = tr.registered()[before]
    try:
        yield
    finally:
        tr.uninstall()
        tr._REPLACEMENTS.remove(entry)
        if was_installed:
            tr.install()
