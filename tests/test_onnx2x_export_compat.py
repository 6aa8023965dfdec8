"""Converted modules work with PyTorch's own tools: fx.symbolic_trace, jit.trace, torch.export,
torch.compile, and re-export to ONNX (dynamo and TorchScript exporters), with the same numbers.

Reference: onnxruntime on the original ONNX model. The light model-zoo graphs get seeded random
weights (``tests/support/light_weights.py``: their shipped constant weights make the softmax
amplify rounding noise). The four smallest light models run by default; the rest (250-575 MB of
weights for alexnet, zfnet512 and vgg19) and torch.compile beyond one model run with ``-m slow``.
Symbolic dimensions must stay dynamic: a model declared with batch ``N`` is traced or exported
at one batch size and run at batch 8.
"""
from __future__ import annotations

import io
import warnings
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2x.torch import artifact, convert
from onnx2x.torch.naming import sanitize
from tests.support.light_weights import LIGHT_MODELS, light_feed, load_light

RTOL, ATOL = 1e-4, 1e-5
DEFAULT_LIGHT = ("squeezenet", "shufflenet", "inception_v1", "resnet50")
COMPILE_DEFAULT = ("squeezenet",)


def _ort_run(model: "onnx.ModelProto | bytes", *inputs: np.ndarray) -> list[np.ndarray]:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def _close(actual: Any, expected: np.ndarray) -> None:
    got = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _onnx_export(module: torch.nn.Module, args: tuple, *, dynamo: bool, dynamic_batch: bool = False) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            kwargs: dict[str, Any] = {"dynamo": True, "verbose": False}
            if dynamic_batch:
                kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1024)},)
            program = torch.onnx.export(module, args, **kwargs)
            return program.model_proto.SerializeToString()
        buf = io.BytesIO()
        kwargs = {"dynamo": False, "input_names": ["x"], "output_names": ["y"]}
        if dynamic_batch:
            kwargs["dynamic_axes"] = {"x": {0: "N"}, "y": {0: "N"}}
        torch.onnx.export(module, args, buf, **kwargs)
        return buf.getvalue()


# --- the nine light model-zoo graphs ----------------------------------------------------------
_LIGHT_CACHE: dict[str, tuple[torch.fx.GraphModule, torch.Tensor, np.ndarray]] = {}


def _light(name: str) -> tuple[torch.fx.GraphModule, torch.Tensor, np.ndarray]:
    if name not in _LIGHT_CACHE:
        _LIGHT_CACHE.clear()  # hold one model at a time: the big ones are hundreds of MB
        model = load_light(name)
        x = light_feed(model)
        ref = _ort_run(model, x)[0]
        gm = convert(model)
        _LIGHT_CACHE[name] = (gm, torch.from_numpy(x), ref)
    return _LIGHT_CACHE[name]


def _run_fx(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    traced = torch.fx.symbolic_trace(gm)
    return traced(x)


def _run_jit(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    traced = torch.jit.trace(gm, (x,))
    return traced(x)


def _run_export(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    return torch.export.export(gm, (x,)).module()(x)


def _run_compile(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    torch._dynamo.reset()
    return torch.compile(gm)(x)


def _run_onnx_dynamo(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    return _ort_run(_onnx_export(gm, (x,), dynamo=True), x.numpy())[0]


def _run_onnx_torchscript(gm: torch.nn.Module, x: torch.Tensor) -> Any:
    return _ort_run(_onnx_export(gm, (x,), dynamo=False), x.numpy())[0]


RUNNERS: dict[str, Callable[[torch.nn.Module, torch.Tensor], Any]] = {
    "fx_symbolic_trace": _run_fx,
    "jit_trace": _run_jit,
    "torch_export": _run_export,
    "torch_compile": _run_compile,
    "onnx_dynamo": _run_onnx_dynamo,
    "onnx_torchscript": _run_onnx_torchscript,
}


def _light_params() -> list[Any]:
    params = []
    for name in LIGHT_MODELS:
        for how in RUNNERS:
            default = name in (COMPILE_DEFAULT if how == "torch_compile" else DEFAULT_LIGHT)
            marks = () if default else (pytest.mark.slow,)
            params.append(pytest.param(name, how, marks=marks, id=f"{name}-{how}"))
    return params


def test_all_nine_light_models_are_covered() -> None:
    assert len(LIGHT_MODELS) == 9


@pytest.mark.parametrize("name,how", _light_params())
def test_light_model(name: str, how: str) -> None:
    gm, x, ref = _light(name)
    with torch.no_grad():
        _close(gm(x), ref)
        _close(RUNNERS[how](gm, x), ref)


# --- a small model with a symbolic batch --------------------------------------------------------
def _dynamic_model() -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool, a Shape-computed flatten to [N, -1], Gemm and Softmax; batch is 'N'."""
    rng = np.random.default_rng(7)
    f32 = np.float32
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(f32), "features.0/weight"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(f32), "bn:scale"),
        numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(f32), "bn:bias"),
        numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(f32), "bn:mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(f32), "bn:var"),
        numpy_helper.from_array((rng.standard_normal((10, 8 * 8 * 8)) * 0.05).astype(f32), "classifier.weight"),
        numpy_helper.from_array((0.1 * rng.standard_normal(10)).astype(f32), "classifier.bias"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "features.0/weight"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn:scale", "bn:bias", "bn:mean", "bn:var"], ["b"]),
        helper.make_node("Relu", ["b"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["n1", "minus_one"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"]),
        helper.make_node("Gemm", ["f", "classifier.weight", "classifier.bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)


@pytest.fixture(scope="module", params=[False, True], ids=["no_simplify", "simplify"])
def dynamic(request: pytest.FixtureRequest) -> tuple[onnx.ModelProto, torch.fx.GraphModule]:
    model = _dynamic_model()
    return model, convert(model, simplify=request.param)


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


def test_dynamic_batch_runs_at_batch_8(dynamic: tuple) -> None:
    model, gm = dynamic
    for n in (1, 8):
        x = _batch(n, n)
        with torch.no_grad():
            _close(gm(torch.from_numpy(x)), _ort_run(model, x)[0])


def test_dynamic_fx_symbolic_trace_and_jit_trace(dynamic: tuple) -> None:
    model, gm = dynamic
    x8 = _batch(8)
    with torch.no_grad():
        _close(torch.fx.symbolic_trace(gm)(torch.from_numpy(x8)), _ort_run(model, x8)[0])
        traced = torch.jit.trace(gm, (torch.from_numpy(_batch(2)),))  # traced at 2, run at 8
        _close(traced(torch.from_numpy(x8)), _ort_run(model, x8)[0])


def test_dynamic_torch_export_keeps_batch_symbolic(dynamic: tuple) -> None:
    model, gm = dynamic
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(gm, (torch.from_numpy(_batch(2)),), dynamic_shapes=({0: batch},))
    for n in (3, 8):
        x = _batch(n, n)
        _close(ep.module()(torch.from_numpy(x)), _ort_run(model, x)[0])


def test_dynamic_torch_compile(dynamic: tuple) -> None:
    model, gm = dynamic
    torch._dynamo.reset()
    compiled = torch.compile(gm, dynamic=True)
    with torch.no_grad():
        for n in (2, 8):
            x = _batch(n, n)
            _close(compiled(torch.from_numpy(x)), _ort_run(model, x)[0])


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_dynamic_onnx_reexport(dynamic: tuple, dynamo: bool) -> None:
    model, gm = dynamic
    data = _onnx_export(gm, (torch.from_numpy(_batch(2)),), dynamo=dynamo, dynamic_batch=True)
    exported = onnx.load_from_string(data)
    first_dim = exported.graph.input[0].type.tensor_type.shape.dim[0]
    assert first_dim.dim_param and not first_dim.HasField("dim_value"), "batch must stay symbolic"
    x8 = _batch(8)
    _close(_ort_run(data, x8)[0], _ort_run(model, x8)[0])


def test_parameter_names_are_onnx_initializer_names() -> None:
    model = _dynamic_model()
    gm = convert(model, simplify=False)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    float_inits = {n for n, a in inits.items() if a.dtype.kind == "f"}
    mapping = gm.onnx_param_names
    assert float_inits <= set(mapping.values())
    for attr, onnx_name in mapping.items():
        if onnx_name in inits:
            assert attr == sanitize(onnx_name)
            np.testing.assert_array_equal(getattr(gm, attr).detach().numpy(), inits[onnx_name])
    assert {name for name, _ in gm.named_parameters()} == {sanitize(n) for n in float_inits}


def test_saved_artifact_exports_too(tmp_path: Any) -> None:
    """The module loaded from the saved source traces and exports with a dynamic batch as well."""
    model = _dynamic_model()
    artifact.save(convert(model), tmp_path / "dyn.pt")
    net = artifact.load(tmp_path / "dyn.pt")
    x8 = _batch(8)
    ref = _ort_run(model, x8)[0]
    with torch.no_grad():
        _close(torch.fx.symbolic_trace(net)(torch.from_numpy(x8)), ref)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(net, (torch.from_numpy(_batch(2)),), dynamic_shapes=({0: batch},))
    _close(ep.module()(torch.from_numpy(x8)), ref)
