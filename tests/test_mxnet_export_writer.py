"""Streaming ONNX writer: byte-compatible with protobuf, never a corrupt or partial file."""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from x2onnx.mxnet.writer import save_model, tensor_size, write_streaming


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(rng.uniform(size=shape).astype(dtype), f"t{i}") for i, (shape, dtype) in
               enumerate([((2, 3), np.float32), ((300,), np.int64), ((0,), np.float32), ((5, 7, 9), np.float16),
                          ((3,), np.bool_), ((64, 130), np.float32)])]
    tensors.append(helper.make_tensor("listed", onnx.TensorProto.FLOAT, [2], [1.0, 2.0]))  # not raw
    tensors[0].doc_string = "documented"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.metadata_props.add(key="k", value="v")
    return model


def test_streamed_bytes_parse_to_the_same_model_and_sizes_are_exact():
    model = _model()
    for tensor in model.graph.initializer:
        assert tensor_size(tensor) == tensor.ByteSize(), tensor.name
    buffer = io.BytesIO()
    written = write_streaming(model, buffer)
    assert written == len(buffer.getvalue()) == len(model.SerializeToString())
    assert onnx.load_from_string(buffer.getvalue()) == model


def test_inconsistent_raw_data_is_refused_and_no_file_is_left(tmp_path):
    model = _model()
    model.graph.initializer[5].raw_data = model.graph.initializer[5].raw_data[:-4]  # dims now lie
    target = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="t5"):
        save_model(model, target)
    assert list(tmp_path.iterdir()) == []


def test_save_model_writes_a_loadable_file(tmp_path):
    model = _model()
    path = save_model(model, tmp_path / "sub" / "m.onnx")
    assert onnx.load(str(path)) == model
