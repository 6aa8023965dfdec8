"""Model summaries (``x2onnx info`` / ``onnx2x info``) against what onnx and MXNet themselves report."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from common.errors import ModelLoadError
from common.model_io import save_onnx
from common.summary import (find_mxnet_params, format_summary, mxnet_summary, onnx_summary,
                            read_mxnet_params_header)
from tests.support.verify_models import models_dir, small_cnn

MTCNN = models_dir() / "mxnet" / "mtcnn"


def _mx():
    from mx2onnx_patches.mxnet_import import import_mxnet

    return import_mxnet()


def test_onnx_summary_matches_the_proto(tmp_path):
    model = small_cnn(batch="N")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    s = onnx_summary(path)
    assert [(i.name, i.shape, i.dtype) for i in s.inputs] == [("x", ("N", 3, 8, 8), "float")]
    assert [o.name for o in s.outputs] == ["prob", "fc_out"]
    assert s.opsets == {"ai.onnx": 17} and s.ir_version == 8
    assert s.op_histogram == dict(Counter(n.op_type for n in model.graph.node))
    assert s.node_count == len(model.graph.node)
    sizes = [numpy_helper.to_array(t).size for t in model.graph.initializer]
    assert s.parameter_count == sum(sizes) and s.parameter_bytes == 4 * sum(sizes)
    assert s.parameter_tensors == len(sizes)
    text = format_summary(s)
    assert "opset:      ai.onnx 17" in text and "x  (N, 3, 8, 8)" in text
    assert f"parameters: {sum(sizes):,} in 5 tensors" in text
    assert any(line.split() == ["Conv", "2"] for line in text.splitlines())


def test_onnx_summary_does_not_read_external_weights(tmp_path):
    model = small_cnn()
    path = tmp_path / "big.onnx"
    save_onnx(model, path, external_data=True)
    (tmp_path / "big.onnx.data").write_bytes(b"")  # weights unreadable: the summary must not need them
    s = onnx_summary(path)
    assert s.parameter_count == sum(numpy_helper.to_array(t).size for t in model.graph.initializer)


@pytest.mark.parametrize("name", ["det1", "det2", "det3", "det4"])
def test_mxnet_summary_matches_mxnet(name):
    mx = _mx()
    symbol = MTCNN / f"{name}-symbol.json"
    s = mxnet_summary(symbol)  # params found beside the symbol
    sym, arg, aux = mx.model.load_checkpoint(str(MTCNN / name), 1)
    params = {**arg, **aux}
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    assert s.parameter_count == sum(int(np.prod(v.shape)) for k, v in params.items() if k in used)
    assert [i.name for i in s.inputs] == ["data"]
    assert [o.name for o in s.outputs] == sym.list_outputs()
    ops = Counter(n["op"] for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null")
    assert s.op_histogram == dict(ops)
    assert "MXNet" in s.producer


def test_params_header_matches_nd_load(tmp_path):
    mx = _mx()
    arrays = {"arg:w": mx.nd.ones((3, 4), dtype="float16"), "aux:m": mx.nd.zeros((5,), dtype="int64"),
              "arg:b": mx.nd.ones((2, 1, 3), dtype="float64")}
    path = tmp_path / "x-0003.params"
    mx.nd.save(str(path), arrays)
    header = read_mxnet_params_header(path)
    loaded = mx.nd.load(str(path))
    assert {k: v[0] for k, v in header.items()} == {k: tuple(v.shape) for k, v in loaded.items()}
    assert {k: v[1] for k, v in header.items()} == {k: np.dtype(v.dtype).name for k, v in loaded.items()}
    # a 0-d array (MXNet can save it but not load it back: its data must still be skipped)
    scalar = tmp_path / "scalar.params"
    mx.nd.save(str(scalar), {"arg:s": mx.nd.array(np.ones(())), "arg:t": mx.nd.ones((2,))})
    assert read_mxnet_params_header(scalar) == {"arg:s": ((), "float32"), "arg:t": ((2,), "float32")}
    (tmp_path / "x-symbol.json").write_text("{}")
    (tmp_path / "x-0001.params").write_bytes(b"")
    assert find_mxnet_params(tmp_path / "x-symbol.json") == path  # newest epoch
    bad = tmp_path / "bad.params"
    bad.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_mxnet_params_header(bad)


def test_mxnet_summary_without_params_and_bad_files(tmp_path):
    sym = tmp_path / "net.json"
    sym.write_text((MTCNN / "det1-symbol.json").read_text())
    s = mxnet_summary(sym, input_shapes={"data": (1, 3, 12, 12)})
    assert s.parameter_count is None and s.inputs[0].shape == (1, 3, 12, 12)
    assert "parameters: unknown" in format_summary(s)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not an MXNet symbol"):
        mxnet_summary(tmp_path / "junk.json")
    with pytest.raises(ModelLoadError, match="no such file"):
        onnx_summary(tmp_path / "missing.onnx")
