"""Model I/O: safe external data, atomic saves, the external-data path for big models."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common import ir as cir
from common.atomic import atomic_files, atomic_path
from common.errors import ModelLoadError, SecurityError
from common.model_io import load_onnx, save_onnx


def _matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _with_external_location(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model


def test_external_data_round_trip_matches_inline(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    path = tmp_path / "m.onnx"
    save_onnx(_matmul_model(w), path, external_data=True)
    assert (tmp_path / "m.onnx.data").is_file()
    assert os.path.getsize(path) < w.nbytes  # the weights really live outside
    loaded = load_onnx(path)
    x = rng.standard_normal((1, 64)).astype(np.float32)
    sess = ort.InferenceSession(loaded.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)
    model, _ = cir.load(path)  # the IR facade reads the same file
    np.testing.assert_array_equal(cir.constant_array(model.graph.initializers["w"]), w)


@pytest.mark.parametrize("location", ["/etc/passwd", "../outside.bin", "sub/../../outside.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = model_dir / "m.onnx"
    onnx.save(_with_external_location(_matmul_model(np.ones((4, 4), np.float32)), location), str(path))
    with pytest.raises(SecurityError) as info:
        load_onnx(path)
    assert str(path) in str(info.value) and location in str(info.value)


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 64)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").symlink_to(secret)
    path = model_dir / "m.onnx"
    onnx.save(_with_external_location(_matmul_model(np.ones((4, 4), np.float32)), "weights.bin"), str(path))
    with pytest.raises(SecurityError, match="outside the model folder"):
        load_onnx(path)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 3, b"not a model at all"])
def test_corrupt_files_give_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        load_onnx(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_onnx(tmp_path / "nope.onnx")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "a.pt"
    with pytest.raises(RuntimeError):
        with atomic_files([a, b]) as (ta, tb):
            ta.write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_files([a, b]) as (ta, tb):
        ta.write_text("x")
        tb.write_text("y")
    assert a.read_text() == "x" and b.read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.py"]


@pytest.mark.slow
def test_model_over_2gb_round_trips_through_external_data(tmp_path):
    """Two 1 GiB (+64 bytes) weights: each fits protobuf's 2 GiB field limit, the model does not."""
    n = 2**28 + 16
    inits = [numpy_helper.from_array(np.full((n,), v, np.float32), name) for name, v in (("a", 0.5), ("b", 0.25))]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("ReduceSum", ["s"], ["y"], keepdims=0)],
        "big", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], initializer=inits,
    )
    del inits
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "big.onnx"
    save_onnx(model, path)
    del model, graph
    assert (tmp_path / "big.onnx.data").stat().st_size >= 2 * 4 * n > 2**31
    loaded = load_onnx(path, load_external_data=False)
    assert [t.data_location for t in loaded.graph.initializer] == [TensorProto.EXTERNAL] * 2
    loaded = load_onnx(path)
    tail = numpy_helper.to_array(loaded.graph.initializer[1])[-4:]
    np.testing.assert_array_equal(tail, np.full(4, 0.25, np.float32))


def test_atomic_outputs_get_ordinary_file_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "m.onnx") as tmp:
            tmp.write_bytes(b"x")
        with atomic_files([tmp_path / "a.py"]) as (ta,):
            ta.write_text("y")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.py").stat().st_mode & 0o777 == 0o644
