"""``onnx2x torch`` / ``onnx2x info``: outputs, verification against onnxruntime, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2x.cli import main
from onnx2x.torch import artifact, registry

REPO = Path(__file__).resolve().parents[1]


def _model(ir_version: int = 8, batch: "str | int" = "N") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "fc/w")
    b = numpy_helper.from_array(rng.standard_normal((6,)).astype(np.float32), "fc/b")
    nodes = [
        helper.make_node("MatMul", ["x", "fc/w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "fc/b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["y"], name="sig"),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=ir_version)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _ort(model: onnx.ModelProto, x: np.ndarray, name: str = "x") -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {name: x})[0]


def test_convert_writes_both_files_and_they_match_onnxruntime(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = _model()
    src = _save(model, tmp_path / "mlp.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "out" / "net.pt")]) == 0
    out = capsys.readouterr().out
    assert "matches onnxruntime" in out
    net = artifact.load(tmp_path / "out" / "net.pt")
    x = np.random.default_rng(5).standard_normal((8, 4)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(model, x), rtol=1e-5, atol=1e-6)


def test_default_output_is_beside_the_model(tmp_path: Path) -> None:
    src = _save(_model(), tmp_path / "mlp.onnx")
    assert main(["torch", str(src), "-q"]) == 0
    assert (tmp_path / "mlp.pt").is_file() and (tmp_path / "mlp.py").is_file()


def test_unsupported_op_exits_3_with_one_line_and_no_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = _model()
    model.graph.node.append(helper.make_node("NoSuchOp", ["y"], ["z"], name="weird", domain="example.custom"))
    model.opset_import.append(helper.make_opsetid("example.custom", 1))
    model.graph.output[0].name = "z"
    src = _save(model, tmp_path / "bad.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "o" / "net.pt")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "weird (NoSuchOp)" in err[0], err
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_unreadable_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    assert main(["torch", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["torch", str(tmp_path / "missing.onnx")]) == 2


def test_bad_input_shape_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _save(_model(), tmp_path / "mlp.onnx")
    assert main(["torch", str(src), "--input-shape", "x=1,4"]) == 2
    assert main(["torch", str(src), "--input-shape", "nope:1,4"]) == 2
    assert "not a model input" in capsys.readouterr().err


def _wrong_relu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the Relu converter return its input unchanged: a converter bug to be caught."""
    real_lookup = registry.lookup

    def lookup(op_type: str, opset: int, **kwargs: object) -> registry.Converter:
        conv = real_lookup(op_type, opset, **kwargs)
        if op_type == "Relu":
            return registry.Converter(lambda ctx: ctx.input(0), conv.since, conv.foldable)
        return conv

    monkeypatch.setattr(registry, "lookup", lookup)


def test_mismatch_exits_3_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _wrong_relu(monkeypatch)
    src = _save(_model(), tmp_path / "mlp.onnx")
    out_dir = tmp_path / "o"
    assert main(["torch", str(src), "-o", str(out_dir / "net.pt")]) == 3
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "output y (2, 6) differs from onnxruntime" in line
    # the locator names the node whose own output is wrong: the broken Relu
    assert line.startswith(f"error: {src}: relu (Relu): ") and "first divergent node: relu (Relu)" in line
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    # --debug adds the locator's whole report
    assert main(["torch", str(src), "-o", str(out_dir / "net.pt"), "--debug"]) == 3
    err = capsys.readouterr().err
    assert "own error (inputs from the reference): r  DIFFERS" in err
    # and --no-verify writes what it converted
    assert main(["torch", str(src), "-o", str(out_dir / "net.pt"), "--no-verify", "-q"]) == 0
    assert (out_dir / "net.py").is_file()


def test_newer_ir_version_is_verified_as_onnxruntime_s_own(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """onnx stamps its newest IR version on models that use nothing new: the reference reads them
    at the newest IR version onnxruntime knows, so the check still runs."""
    src = _save(_model(ir_version=99), tmp_path / "future.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out
    net = artifact.load(tmp_path / "net.pt")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(_model(), x), rtol=1e-5, atol=1e-6)  # same graph, IR 8


def _matmul_of_free_length(w: np.ndarray) -> onnx.ModelProto:
    """``x[batch, length] @ w``: it runs only where ``length`` is ``w``'s first dimension."""
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[1]])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_model_exported_for_one_length_says_which_shapes_failed_and_how_to_give_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A free axis the graph only runs at 16 (an exporter's baked-in length): the warning shows
    onnxruntime's reason for the first draw, the shapes tried, and the flag; with it, it verifies."""
    w = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    src = _save(_matmul_of_free_length(w), tmp_path / "fixed.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    err = capsys.readouterr().err
    assert "verification skipped: onnxruntime cannot run the model on random inputs of shapes 2x8 (" in err, err
    assert "nor on 1x1; 1x32; 1x224; 1x1024." in err and "--input-shape NAME:D0,D1" in err, err
    assert main(["torch", str(src), "-o", str(tmp_path / "net16.pt"), "--input-shape", "x:3,16"]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out


def test_cast_into_a_value_declared_of_another_type_is_refused_with_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """onnxconverter-common's float16 conversion can leave ``Cast(to=FLOAT)`` writing a value it
    declares float16; the module would fail where that value meets a float16 weight."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    nodes = [helper.make_node("Cast", ["x"], ["x_cast"], name="embeddings/Cast", to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x_cast", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 4])], [w],
                              value_info=[helper.make_tensor_value_info("x_cast", TensorProto.FLOAT16, [2, 4])])
    src = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
                tmp_path / "fp16.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) != 0
    err = capsys.readouterr().err
    assert "embeddings/Cast (Cast): casts to FLOAT but the graph declares its output 'x_cast' as FLOAT16" in err, err
    assert not list(tmp_path.glob("net.*"))


def _pools(shape: list, count: int = 4) -> onnx.ModelProto:
    """``count`` 2x2/2 average pools: an 8x10 image reaches the fourth at 1x1, which onnxruntime
    pools to 1x1 and PyTorch (as ONNX's output-size formula, 0) refuses."""
    nodes = [helper.make_node("AveragePool", [f"x{i}"], [f"x{i + 1}"], kernel_shape=[2, 2], strides=[2, 2])
             for i in range(count)]
    graph = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(f"x{count}", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_module_refusing_the_smallest_draw_is_checked_at_the_next_size_both_run(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A CNN exported with a symbolic image size (DenseNet by the dynamo exporter) was refused:
    the check's first image, 8x10, is smaller than the network's pooling windows."""
    src = _save(_pools(["batch", 1, "height", "width"]), tmp_path / "pools.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    captured = capsys.readouterr()
    assert "the converted module fails at input shapes 2x1x8x10, where onnxruntime computes outputs" in captured.err
    assert "checked at shapes 1x1x32x40 instead" in captured.err and "matches onnxruntime (x4 (1, 1, 2, 2)" in captured.out
    x = np.random.default_rng(0).standard_normal((3, 1, 64, 48)).astype(np.float32)
    with torch.no_grad():
        got = artifact.load(tmp_path / "net.pt")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(_pools(["batch", 1, "height", "width"]), x, "x0"), rtol=1e-6, atol=1e-7)


def test_module_failing_at_every_size_onnxruntime_runs_is_refused_and_the_json_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _save(_pools([2, 1, 8, 10]), tmp_path / "fixed.onnx")
    report = tmp_path / "check.json"
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt"), "--verify-json", str(report)]) != 0
    err = capsys.readouterr().err
    assert "the converted module fails on inputs onnxruntime accepts (shapes 2x1x8x10: " in err, err
    written = json.loads(report.read_text())
    assert written["ok"] is False and "shapes 2x1x8x10" in written["error"]
    assert "--input NAME=FILE.npy" not in err  # fixed sizes: no other size to suggest
    assert not list(tmp_path.glob("net.*"))


def test_module_failing_at_every_drawn_size_says_how_to_check_at_real_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """PP-OCR's text recognizer (paddle2onnx, a symbolic height) runs only at height 48: every size
    the check drew failed in PyTorch, and the error did not say how to check at a size that works."""
    src = _save(_pools(["batch", 1, "height", "width"], count=11), tmp_path / "deep.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 3
    err = capsys.readouterr().err
    assert "it fails at every size the check drew that onnxruntime runs (2x1x8x10; " in err, err
    assert "1x1x1024x1024)" in err and "--input NAME=FILE.npy" in err and "--input-shape NAME:D0,D1" in err
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((1, 1, 2048, 2048)).astype(np.float32))
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt"), "--input", f"x0={x}"]) == 0


def test_a_check_onnxruntime_runs_only_at_size_one_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An export whose free axes run only at 1 (the opset-23 RotaryEmbedding's batch-1 caches): the
    check passed at 1x1 without a word; it now warns and names the refused shapes."""
    src = _save(_matmul_of_free_length(np.ones((1, 4), np.float32)), tmp_path / "ones.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    captured = capsys.readouterr()
    assert "checked only with every free axis of size 1: onnxruntime refuses inputs of shapes 2x8 (" in captured.err
    assert "--input-shape NAME:D0,D1" in captured.err and "matches onnxruntime (y (1, 4)" in captured.out


def test_model_onnxruntime_refuses_is_converted_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """BiasAdd (com.microsoft) has no CPU kernel in onnxruntime: nothing to verify against."""
    rng = np.random.default_rng(0)
    bias = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias")
    node = helper.make_node("BiasAdd", ["x", "bias", "skip"], ["y"], name="biasadd", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6]),
                                            helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, 2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6])], [bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=8)
    src = _save(model, tmp_path / "gpu_only.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    captured = capsys.readouterr()
    assert "verification skipped" in captured.err and "onnxruntime cannot load" in captured.err
    net = artifact.load(tmp_path / "net.pt")
    x, skip = rng.standard_normal((2, 1, 2, 6)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x), torch.from_numpy(skip)).numpy()
    np.testing.assert_allclose(got, x + skip + numpy_helper.to_array(bias), rtol=1e-6, atol=1e-6)


def test_input_shape_and_simplify_path(tmp_path: Path) -> None:
    src = _save(_model(), tmp_path / "mlp.onnx")
    sim = tmp_path / "mlp.sim.onnx"
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt"), "--input-shape", "x:2,4",
                 "--simplify-path", str(sim), "-q"]) == 0
    converted = onnx.load(str(sim))
    dims = [d.dim_value for d in converted.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 4]
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(_ort(converted, x), _ort(_model(), x), rtol=1e-6)


def test_no_simplify_keeps_symbolic_batch(tmp_path: Path) -> None:
    model = _model()
    src = _save(model, tmp_path / "mlp.onnx")
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt"), "--no-simplify", "-q"]) == 0
    net = artifact.load(tmp_path / "net.pt")
    x = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), _ort(model, x), rtol=1e-5, atol=1e-6)


def test_info_lists_inputs_and_ops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _save(_model(), tmp_path / "mlp.onnx")
    assert main(["info", str(src)]) == 0
    out = capsys.readouterr().out
    assert "x" in out and "MatMul" in out and "Sigmoid" in out
    assert "every op supported" in out
    model = _model()
    model.graph.node.append(helper.make_node("NoSuchOp", ["y"], ["z"], domain="example.custom"))
    model.opset_import.append(helper.make_opsetid("example.custom", 1))
    model.graph.output[0].name = "z"
    bad = _save(model, tmp_path / "bad.onnx")
    assert main(["info", str(bad), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["unsupported_ops"] == ["example.custom::NoSuchOp"]
    assert [i["name"] for i in data["inputs"]] == ["x"]


def test_help_documents_every_option() -> None:
    proc = subprocess.run([sys.executable, "-m", "onnx2x", "torch", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("-o", "--input-shape", "--no-simplify", "--simplify-path", "--no-verify", "--debug",
                   "example", "weights_only=True"):
        assert option in proc.stdout, option
    assert subprocess.run([sys.executable, "-m", "onnx2x"], cwd=REPO, capture_output=True,
                          timeout=120).returncode == 2


def _strided_stem() -> onnx.GraphProto:
    """An image model of dynamic size whose 16x16 stem refuses 8x8 and 1x1 images (EfficientNet's
    stem and raw-audio encoders shrink their input in the same way)."""
    w = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    return helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], strides=[8, 8])], "stem",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, None, None])],
                             [numpy_helper.from_array(w, "w")])


def test_check_draws_symbolic_sizes_above_one_and_falls_back_to_ones(tmp_path: Path) -> None:
    """Symbolic batch and length are drawn as 2 and 8 (size 1 hides batch and broadcasting
    mix-ups); a model whose symbolic sizes only work at 1 is still checked, at 1; one that needs
    larger images than 8x8 is checked at 32x40 (height and width each at a size of its own), not
    skipped."""
    free = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "free",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])])
    tied = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "tied",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                             [numpy_helper.from_array(np.array([3], dtype=np.int64), "shape")])
    for graph, shape in ((free, [2, 8]), (tied, [1, 3]), (_strided_stem(), [1, 3, 32, 40])):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        src = _save(model, tmp_path / f"{graph.name}.onnx")
        report = tmp_path / f"{graph.name}.json"
        assert main(["torch", str(src), "--verify-json", str(report), "-q"]) == 0
        verdict = json.loads(report.read_text())
        assert verdict["ok"] and verdict["input_shapes"]["x"] == shape


def test_input_files_feed_the_check(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``--input`` checks on the user's data: a Relu broken for negative values passes on positive
    data only, inputs not given are drawn at the sizes the given ones fix, and a bad item exits 2
    before anything is converted or written."""
    _wrong_relu(monkeypatch)
    dims = ["batch", "length"]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "m"], ["y"])],
                              "given", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in "xm"],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    src = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
                tmp_path / "given.onnx")
    positive = tmp_path / "x.npy"
    np.save(positive, np.random.default_rng(1).uniform(0.5, 2.0, (1, 7)).astype(np.float32))
    out, report = tmp_path / "o" / "net.pt", tmp_path / "verify.json"
    assert main(["torch", str(src), "-o", str(out), "-q"]) == 3  # random inputs are negative too
    assert main(["torch", str(src), "-o", str(out), "--input", f"x={positive}", "--verify-json", str(report),
                 "-q"]) == 0
    assert json.loads(report.read_text())["input_shapes"] == {"x": [1, 7], "m": [1, 7]}
    out.unlink()
    capsys.readouterr()
    for bad, message in (([f"nope={positive}"], "'nope' is not an input of the model"),
                         ([f"x={tmp_path / 'missing.npy'}"], "missing.npy"),
                         ([f"x={positive}", "--no-verify"], "--no-verify turns off")):
        flags = ["--input", bad[0]] + bad[1:]
        assert main(["torch", str(src), "-o", str(out), *flags]) == 2, bad
        err = capsys.readouterr().err
        (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert message in line, err
        if bad[0].startswith("nope="):  # a wrong name is the model's business: the line names the model
            assert line.startswith(f"error: {src}: "), line
        assert not out.exists()


def test_option_prefixes_are_not_guessed(capsys: pytest.CaptureFixture) -> None:
    """``--inp`` is not silently read as ``--input-shape`` (or ``--input``): an unknown option."""
    with pytest.raises(SystemExit) as info:
        main(["torch", "m.onnx", "--inp", "x=1,4"])
    assert info.value.code == 2 and "unrecognized arguments: --inp" in capsys.readouterr().err
