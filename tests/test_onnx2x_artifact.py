"""Saved artifacts (NAME.pt + NAME.py) load and run without onnx2x, and match the in-process module."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2x.torch import artifact, convert
from onnx2x.torch.naming import sanitize

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter, outside the repository, with the toolkit's packages made unimportable
# (even if they were installed): the artifact must need nothing but torch.
_LOADER = textwrap.dedent('''
    import importlib.abc, importlib.util, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("onnx2x", "common", "x2onnx", "roundtrip", "tests", "onnx", "onnxruntime"):
                raise ImportError("blocked: " + name)
            return None
    sys.meta_path.insert(0, Block())
    try:
        import onnx2x
    except ImportError:
        pass
    else:
        raise SystemExit("onnx2x importable in the subprocess")
    import torch
    source, inputs_path, out_path = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("saved_model", source)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        out = net(*inputs)
    torch.save(list(out) if isinstance(out, tuple) else [out], out_path)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("onnx2x", "common"))
    assert not leaked, leaked
''')


def _conv_model() -> onnx.ModelProto:
    """Conv -> Relu -> ReduceMean -> Gemm with a symbolic batch and awkward initializer names."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv1/W:0"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "conv1.bias"),
        numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "fc/weight"),
        numpy_helper.from_array(rng.standard_normal((5,)).astype(np.float32), "class"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv1/W:0", "conv1.bias"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("ReduceMean", ["r"], ["m"], name="gap", axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fc/weight", "class"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "convnet",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _if_model() -> onnx.ModelProto:
    """An If whose condition is only known at run time: its branches become submodules."""
    then_w = numpy_helper.from_array(np.array([2.0, 3.0, 4.0], np.float32), "then/w")
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "then/w"], ["t"])], "then_body", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 3])], [then_w])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else_body", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 3])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(nodes, "ifnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _run_outside(source: Path, inputs: list[torch.Tensor], tmp_path: Path) -> list[torch.Tensor]:
    inputs_path, out_path = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(inputs, inputs_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(source), str(inputs_path), str(out_path)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not str(workdir).startswith(str(REPO))
    return torch.load(out_path, weights_only=True)


def _ort(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def test_saved_model_runs_without_onnx2x_and_matches(tmp_path: Path) -> None:
    model = _conv_model()
    gm = convert(model, simplify=False)
    weights, source = artifact.save(gm, tmp_path / "out" / "net.pt", source_label="convnet.onnx")
    assert (weights.name, source.name) == ("net.pt", "net.py")
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((8, 3, 16, 16)).astype(np.float32))
    with torch.no_grad():
        expected = gm(x)
    (got,) = _run_outside(source, [x], tmp_path)
    assert got.shape == (8, 5)  # declared with a symbolic batch, run at batch 8
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    np.testing.assert_allclose(got.numpy(), _ort(model, [x.numpy()])[0], rtol=1e-4, atol=1e-5)


def test_weights_file_is_a_plain_state_dict_keyed_by_onnx_names(tmp_path: Path) -> None:
    gm = convert(_conv_model(), simplify=False)
    weights, source = artifact.save(gm, tmp_path / "net.pt")
    state = torch.load(weights, weights_only=True)
    names = {"conv1/W:0", "conv1.bias", "fc/weight", "class"}
    assert set(gm.onnx_param_names.values()) == names
    assert set(state) == {sanitize(n) for n in names}
    for key, onnx_name in gm.onnx_param_names.items():
        init = next(t for t in _conv_model().graph.initializer if t.name == onnx_name)
        np.testing.assert_array_equal(state[key].numpy(), numpy_helper.to_array(init))
    text = source.read_text()
    assert "ONNX_PARAM_NAMES" in text and "'conv1/W:0'" in text
    assert "import onnx2x" not in text and "from onnx2x" not in text and "from common" not in text


def test_runtime_helpers_are_plain_functions_and_only_those_called(tmp_path: Path) -> None:
    """The .py carries the helpers its forward calls, as top-level defs it calls by their names,
    plus what they need from their modules, and nothing else of the runtime package."""
    import re

    gm = convert(_conv_model(), simplify=False)
    called = {n.target for n in gm.graph.nodes
              if n.op == "call_function" and getattr(n.target, "__module__", "").startswith("onnx2x.torch.runtime.")}
    assert called, "this model was chosen to need runtime helpers (ReduceMean, Gemm)"
    _, source = artifact.save(gm, tmp_path / "net.pt")
    text = source.read_text()
    assert "_module_from_source" not in text and "exec(" not in text
    defined = set(re.findall(r"^def (\w+)\(", text, re.M)) - {"load"}
    forward = text[text.index("    def forward("):]
    for fn in called:
        assert fn.__name__ in defined
        assert re.search(rf"\b{fn.__name__}\(", forward), f"forward should call {fn.__name__} by its name"
    assert {"arg_extreme", "cumulative"}.isdisjoint(defined), "reduce.py functions this model does not need"


def test_runtime_modules_import_no_sibling() -> None:
    """A saved .py carries runtime helpers extracted from their own module only
    (:mod:`onnx2x.torch.runtime_source`): a runtime module that imports a sibling writes a .py
    that fails to import (``No module named 'linalg'``)."""
    import ast

    runtime = REPO / "onnx2x" / "torch" / "runtime"
    toolkit = {"onnx2x", "common", "x2onnx", "mx2onnx_patches"}
    for path in sorted(runtime.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}:{node.lineno} imports a sibling ({ast.unparse(node)})"
                roots = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            else:
                continue
            assert toolkit.isdisjoint(roots), f"{path.name}:{node.lineno}: {ast.unparse(node)}"


def test_saved_quantized_matmul_runs_without_onnx2x(tmp_path: Path) -> None:
    """MatMulInteger (exact 8-bit products, in quantize.py) from a saved .py, outside the repository.
    The reference is the integer definition: onnxruntime's uint8 x int8 kernels saturate on CPUs
    without VNNI (tests/test_onnx2x_quantized.py::test_qlinear_conv_full_range_is_exact)."""
    rng = np.random.default_rng(3)
    b = rng.integers(-128, 128, (16, 6)).astype(np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])
    graph = helper.make_graph([node], "mmi", [helper.make_tensor_value_info("a", TensorProto.UINT8, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [4, 6])],
                              [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(131, np.uint8), "za")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    _, source = artifact.save(convert(model, simplify=False), tmp_path / "out" / "mmi.pt")
    a = rng.integers(0, 256, (4, 16)).astype(np.uint8)
    (got,) = _run_outside(source, [torch.from_numpy(a)], tmp_path)
    assert got.dtype == torch.int32
    np.testing.assert_array_equal(got.numpy(), (a.astype(np.int64) - 131) @ b.astype(np.int64))


def test_a_model_without_helpers_has_none(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
                              "plain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _, source = artifact.save(convert(model, simplify=False), tmp_path / "plain.pt")
    text = source.read_text()
    assert "# --- helpers" not in text and "\ndef " not in text.split("class Model")[0]
    x = torch.randn(2, 3)
    (got,) = _run_outside(source, [x], tmp_path)
    torch.testing.assert_close(got, torch.relu(x) + x)


def test_subgraph_modules_become_classes(tmp_path: Path) -> None:
    model = _if_model()
    gm = convert(model, simplify=False)
    assert any(isinstance(m, torch.fx.GraphModule) for m in gm.children()), "If branches should be submodules"
    _, source = artifact.save(gm, tmp_path / "ifnet.pt")
    assert "class Model_" in source.read_text()
    pos = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    for k, x in enumerate((pos, -pos)):  # one input per branch
        run_dir = tmp_path / f"run{k}"
        run_dir.mkdir()
        (got,) = _run_outside(source, [x], run_dir)
        np.testing.assert_allclose(got.numpy(), _ort(model, [x.numpy()])[0], rtol=1e-6)
        with torch.no_grad():
            torch.testing.assert_close(got, gm(x), rtol=0, atol=0)


def test_in_process_load_round_trip(tmp_path: Path) -> None:
    gm = convert(_conv_model(), simplify=False)
    artifact.save(gm, tmp_path / "net.py")  # a .py path names the source; weights go to net.pt
    assert (tmp_path / "net.pt").is_file()
    net = artifact.load(tmp_path / "net.pt")
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), gm(x), rtol=0, atol=0)


def test_failed_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gm = convert(_conv_model(), simplify=False)

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        artifact.save(gm, tmp_path / "net.pt")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_global_is_refused(tmp_path: Path) -> None:
    """A converter that emits a lambda cannot be saved as source: a clear error, no files."""
    from common.errors import ConversionFailure

    gm = convert(_conv_model(), simplify=False)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(out):
        bad = gm.graph.call_function(lambda t: t * 2, (out.args[0],))
    out.args = (bad,)
    gm.recompile()
    with pytest.raises(ConversionFailure, match="cannot be written as source"):
        artifact.save(gm, tmp_path / "net.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stem,warns", [("json", True), ("torch", True), ("resnet_v2", False), ("my-net", False)])
def test_an_output_named_like_an_importable_module_is_warned_about(
        stem: str, warns: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``out/json.py`` on sys.path would hide the standard ``json`` (and ``torch.py`` torch) from
    every later import in the process: say so when writing it, and still write it."""
    gm = convert(_conv_model())
    with caplog.at_level("WARNING", logger="onnx2x.torch.artifact"):
        weights, source = artifact.save(gm, tmp_path / f"{stem}.pt")
    assert weights.is_file() and source.is_file()
    warned = [r.getMessage() for r in caplog.records if "importable Python module" in r.getMessage()]
    assert bool(warned) == warns, warned
    if warns:
        assert f"`import {stem}`" in warned[0] and "onnx2x.torch.artifact.load" in warned[0]
