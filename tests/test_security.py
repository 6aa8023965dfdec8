"""Security rules, one test each, through the public entry points.

1. ONNX external data that escapes the model's folder is refused (absolute path, '..', symlink).
2. Attribute strings from MXNet JSON are never evaluated as Python.
3. Saved PyTorch artifacts load with ``torch.load(weights_only=True)`` and contain no pickled code.
"""
from __future__ import annotations

import json
import pickletools
import zipfile

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from common.errors import ConversionError, SecurityError


def _model_with_external(location: str) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="add")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_onnx2x_refuses_external_data_outside_the_model_folder(tmp_path, how, capsys):
    from onnx2x.cli import main

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(4, 7, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    location = {"absolute": str(secret), "dotdot": "../secret.bin", "symlink": "link.bin"}[how]
    if how == "symlink":
        (folder / "link.bin").symlink_to(secret)
    path = folder / "m.onnx"
    onnx.save(_model_with_external(location), str(path))
    out = tmp_path / "out" / "m.pt"
    code = main(["torch", str(path), "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: {path}") and "refused" in err[0]
    assert not out.exists() and not out.with_suffix(".py").exists()

    from onnx2x.torch import convert

    with pytest.raises(SecurityError):
        convert(path)


def test_mxnet_attribute_strings_are_never_evaluated(tmp_path):
    from mx2onnx_patches.mxnet_import import import_mxnet
    from x2onnx.mxnet import export

    mx = import_mxnet()
    marker = tmp_path / "pwned"
    net = mx.sym.Convolution(mx.sym.Variable("data"), num_filter=2, kernel=(3, 3), name="conv")
    doc = json.loads(net.tojson())
    conv = next(n for n in doc["nodes"] if n["op"] == "Convolution")
    conv["attrs"]["kernel"] = f"__import__('pathlib').Path({str(marker)!r}).touch() or (3, 3)"
    sym_path = tmp_path / "evil-symbol.json"
    sym_path.write_text(json.dumps(doc))
    params = {"arg:conv_weight": mx.nd.ones((2, 1, 3, 3)), "arg:conv_bias": mx.nd.zeros((2,))}
    params_path = tmp_path / "evil-0000.params"
    mx.nd.save(str(params_path), params)
    with pytest.raises(ConversionError) as info:
        export(str(sym_path), str(params_path), {"data": (1, 1, 5, 5)})
    assert "\n" not in str(info.value)
    assert not marker.exists(), "an attribute string was executed"


def test_saved_artifact_is_plain_tensors_loadable_with_weights_only(tmp_path):
    from onnx2x.cli import main

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1, name="fc")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "fc.weight"),
         numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fc.bias")])
    path = tmp_path / "fc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    out = tmp_path / "fc.pt"
    assert main(["torch", str(path), "-o", str(out), "-q"]) == 0
    state = torch.load(out, weights_only=True)  # raises on anything but tensors and containers
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    # No pickle opcode in the archive may import a global other than torch's tensor rebuilders.
    with zipfile.ZipFile(out) as archive:
        pickled = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        ops = list(pickletools.genops(archive.read(pickled)))
    globals_used = {arg for op, arg, _ in ops if op.name in ("GLOBAL", "STACK_GLOBAL") and arg}
    assert all(str(g).startswith(("torch", "collections OrderedDict")) for g in globals_used), globals_used
