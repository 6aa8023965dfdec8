"""Lazy loading (common.weight_refs, load_onnx(lazy=True)) and what it buys: one read of the weights.

* the skeleton holds no weight bytes, and its references give back exactly what onnx.load reads;
* conversion from a path gives a module whose tensors are its own (not views of the file);
* ``onnx2x torch --no-verify`` converts a 76 MB model with at most 1.2 copies of the weights at
  peak, measured in a fresh process.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from common import weight_refs
from common.errors import ModelLoadError, SecurityError
from common.model_io import load_onnx
from onnx2x.cli import main
from onnx2x.torch import artifact, convert
from tests.support.peak_memory import mapped_file, measure_in_subprocess


def _mlp(widths: list[int], *, seed: int = 0, batch: "str | int" = "N") -> onnx.ModelProto:
    """MatMul + Add + Relu layers: big weights and small biases, with a Reshape shape constant."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(b)).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"])]
        x = f"r{i}"
    inits.append(numpy_helper.from_array(np.array([-1, widths[-1]], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", [x, "shape"], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, widths[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, widths[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _save_external(model: onnx.ModelProto, path: Path) -> None:
    """Save with every tensor over 1 KB in ``<name>.data`` beside it (``model`` itself unchanged)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.stem + ".data", size_threshold=1024)


def _arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_skeleton_references_give_back_the_same_bytes(tmp_path: Path) -> None:
    model = _mlp([64, 128, 32])
    # one weight as packed float_data, one with an explicit data_location: DEFAULT
    w1 = model.graph.initializer[2]
    values = numpy_helper.to_array(w1)
    w1.ClearField("raw_data")
    w1.float_data.extend(values.reshape(-1).tolist())
    model.graph.initializer[0].data_location = TensorProto.DEFAULT
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))

    lazy = load_onnx(path, lazy=True)
    refs = {t.name: weight_refs.reference(t) for t in lazy.graph.initializer if weight_refs.reference(t)}
    assert set(refs) == {"w0", "w1"}  # the biases and the shape are small: they stay in the proto
    assert all(loc == str(path.resolve()) for loc, _, _ in refs.values())
    assert lazy.ByteSize() < 4096 < os.path.getsize(path)
    whole = weight_refs.materialize(load_onnx(path, lazy=True))
    expected = _arrays(onnx.load(str(path)))
    got = _arrays(whole)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_lazy_load_keeps_external_data_references_and_their_checks(tmp_path: Path) -> None:
    model = _mlp([64, 64, 8])
    folder = tmp_path / "model"
    folder.mkdir()
    _save_external(model, folder / "m.onnx")
    lazy = load_onnx(folder / "m.onnx", lazy=True)
    w0 = next(t for t in lazy.graph.initializer if t.name == "w0")
    location, offset, length = weight_refs.reference(w0)
    assert location == str((folder / "m.data").resolve())
    np.testing.assert_array_equal(weight_refs.read_array(location, offset, length, np.float32, (64, 64)),
                                  numpy_helper.to_array(model.graph.initializer[0]))
    # a location leaving the folder is refused as in an ordinary load
    for t in model.graph.initializer:
        if t.name == "w0":
            t.data_location = TensorProto.EXTERNAL
            t.ClearField("raw_data")
            t.external_data.add(key="location", value="../outside.bin")
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64 * 64 * 4)
    onnx.save(model, str(folder / "bad.onnx"))
    with pytest.raises(SecurityError):
        load_onnx(folder / "bad.onnx", lazy=True)


def test_lazy_load_of_a_corrupt_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x0a\xff\xff\xff\x7f" + b"x" * 20)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_onnx(path, lazy=True)


def test_converted_module_owns_its_weights(tmp_path: Path) -> None:
    """convert(path) reads each weight once into tensors of its own: writable, not mapped from
    the file, and unaffected when the file changes afterwards."""
    model = _mlp([256, 512, 16])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    gm = convert(str(path), simplify=False)
    x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    with torch.no_grad():
        before = gm(torch.from_numpy(x)).numpy()
    reference = convert(model, simplify=False)
    with torch.no_grad():
        np.testing.assert_array_equal(before, reference(torch.from_numpy(x)).numpy())
    big = [t for t in gm.state_dict().values() if t.numel() * t.element_size() >= 1 << 16]
    assert big and all(mapped_file(t.data_ptr()) != str(path.resolve()) for t in big)
    path.write_bytes(b"\0" * os.path.getsize(path))  # the file changes: the module does not
    with torch.no_grad():
        np.testing.assert_array_equal(gm(torch.from_numpy(x)).numpy(), before)
        for t in big:
            t.mul_(1.0)  # writable


def test_cli_verifies_a_model_with_external_data_from_another_folder(tmp_path: Path, capsys) -> None:
    """onnxruntime reads the model's weights from their file (relative to the model's folder),
    wherever the command runs; the working directory is the same afterwards."""
    model = _mlp([128, 256, 8])
    folder = tmp_path / "model"
    folder.mkdir()
    _save_external(model, folder / "m.onnx")
    cwd = os.getcwd()
    assert main(["torch", str(folder / "m.onnx"), "-o", str(tmp_path / "out" / "m.pt"), "--input-shape", "x:2,128"]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out
    assert os.getcwd() == cwd
    net = artifact.load(tmp_path / "out" / "m.pt", mmap=True)
    x = np.random.default_rng(2).standard_normal((2, 128)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    ref = np.maximum(np.maximum(x @ _arrays(model)["w0"] + _arrays(model)["b0"], 0) @ _arrays(model)["w1"]
                     + _arrays(model)["b1"], 0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_cli_conversion_peak_memory_is_at_most_1_2_weight_copies(tmp_path: Path) -> None:
    """``onnx2x torch --no-verify`` (load, simplify, convert, write) on 76 MB of weights, in a fresh
    process. (The check against onnxruntime adds onnxruntime's own session: see
    docs/BENCHMARKS.md and the 1e9-parameter case in tests/test_onnx2x_llm_scale.py.)"""
    model = _mlp([2048, 4096, 2048, 1024], seed=3, batch=1)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    weight_bytes = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    del model
    measured = measure_in_subprocess("cli", path, tmp_path / "out" / "mlp.pt", cli_flags=["--no-verify"])
    assert "error" not in measured, measured.get("stderr")
    copies = measured["peak_mb"] * 2**20 / weight_bytes
    print(f"\nonnx2x torch --no-verify: {weight_bytes / 2**20:.0f} MB of weights, peak {copies:.2f} copies, "
          f"{measured['seconds']:.2f} s")
    assert 0.9 <= copies <= 1.2  # the module itself is one copy
    assert (tmp_path / "out" / "mlp.pt").stat().st_size >= weight_bytes
