"""Validation of MXNet inputs before MXNet sees them: symbol JSON structure, op probes, the
``.params`` reader and parameters checked against what the symbol infers; and the other side of
the front door: what MXNet 1.9.1 accepts loads and exports (Python-2 ``8L`` tuples, the JSON
layouts of MXNet 0.8 to 1.9, declared shapes and dtypes read where and as MXNet reads them), and
what it refuses is refused with its reason.

References: MXNet itself (its own loader, output counts, input lists, shape inference and
``mx.nd.load``) and the numbers a successful export verifies against MXNet.
"""
from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from common.errors import ModelLoadError, ShapeError, UnsupportedOpError
from tests.support.mxnet_legacy import STYLES, declared_convnet, legacy_style, python2_style
from tests.support.mxnet_ops import mx, mxnet_forward, onnx_forward, rand, random_params
from x2onnx.cli import main
from x2onnx.mxnet import loading, validate
from x2onnx.mxnet.export import export
from x2onnx.mxnet.params_file import read_params_file

from tests.support.shared_models import MTCNN, require  # noqa: E402
data = mx.sym.var("data")


def _net():
    net = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv")
    parts = mx.sym.SliceChannel(net, num_outputs=2, axis=1, name="split")
    net = mx.sym.Flatten(parts[1] + parts[0], name="flat")
    return mx.sym.FullyConnected(net, num_hidden=3, name="fc")


def _graph() -> dict:
    return json.loads(_net().tojson())


def _index(graph: dict, name: str) -> int:
    return next(i for i, n in enumerate(graph["nodes"]) if n["name"] == name)


def _write(tmp_path: Path, graph, name: str = "net") -> Path:
    path = tmp_path / f"{name}-symbol.json"
    path.write_text(json.dumps(graph))
    return path


def _load_error(tmp_path: Path, graph, error=ModelLoadError) -> ModelLoadError:
    with pytest.raises(error) as info:
        loading.load_symbol(_write(tmp_path, graph))
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(tmp_path)), text
    return info.value


# --- symbol structure --------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [[], 42, None, {"nodes": []}, {"foo": 1}, {"nodes": [], "heads": []}])
def test_json_that_is_no_symbol_is_refused(tmp_path, doc):
    err = _load_error(tmp_path, doc)
    assert "MXNet symbol" in err.message


def test_missing_arg_nodes_and_unknown_fields_are_named(tmp_path):
    graph = _graph()
    del graph["arg_nodes"]
    assert "'arg_nodes' is missing" in _load_error(tmp_path, graph).message
    graph = _graph()
    graph["nodes"][_index(graph, "conv")]["weights"] = [1]
    err = _load_error(tmp_path, graph)
    assert (err.node, err.op_type) == ("conv", "Convolution") and "unexpected field 'weights'" in err.message


@pytest.mark.parametrize("field, value, expect", [
    ("op", 5, "'op' must be a string"),
    ("op", "", "'op' is empty"),
    ("name", None, "'name' must be a non-empty string"),
    ("inputs", "x", "'inputs' must be a list"),
    ("inputs", [[]], "is not a [node, output, version] list of integers"),
    ("inputs", [[0.0, 0, 0]], "is not a [node, output, version] list of integers"),
    ("inputs", [[True, 0, 0]], "is not a [node, output, version] list of integers"),
    ("attrs", 5, "'attrs' must be an object"),
    ("attrs", {"kernel": [3, 3]}, "attribute 'kernel' must be a string"),
])
def test_wrong_field_types_name_the_node(tmp_path, field, value, expect):
    graph = _graph()
    conv = _index(graph, "conv")
    graph["nodes"][conv][field] = value
    err = _load_error(tmp_path, graph)
    assert expect in err.message
    assert err.node in ("conv", f"node {conv}")
    with pytest.raises(mx.base.MXNetError) as reference:  # MXNet's loader refuses the file too ...
        mx.sym.load_json(json.dumps(graph))
    if value != "":  # ... its JSON reader, whose words end our line (an empty op is refused later)
        reason = re.search(r" \(MXNet: (.*)\)$", err.message).group(1)
        assert reason and reason in str(reference.value), (reason, str(reference.value))


@pytest.mark.parametrize("ref, expect", [(-1, "but the graph has nodes 0.."), (10**9, "but the graph has nodes 0.."),
                                         ("self", "does not come before it"), ("last", "does not come before it")])
def test_dangling_and_cyclic_references_are_refused(tmp_path, ref, expect):
    graph = _graph()
    i = _index(graph, "flat")
    graph["nodes"][i]["inputs"][0][0] = {"self": i, "last": len(graph["nodes"]) - 1}.get(ref, ref)
    err = _load_error(tmp_path, graph)
    assert err.node == "flat" and expect in err.message


def test_output_index_is_checked_against_mxnets_own_output_count(tmp_path):
    split = mx.sym.SliceChannel(data, num_outputs=3, axis=1, name="split")
    outputs = len(split.list_outputs())  # reference: MXNet's count for this op with these attributes
    assert outputs == 3
    graph = json.loads(mx.sym.Flatten(split[0], name="flat").tojson())
    flat, source = _index(graph, "flat"), _index(graph, "split")
    graph["nodes"][flat]["inputs"][0][1] = outputs - 1  # the last output: fine
    sym, _ = loading.load_symbol(_write(tmp_path, graph))
    assert sym.infer_shape(data=(1, 6, 2))[1] == [(1, 4)]
    for bad in (outputs, 10**9):
        graph["nodes"][flat]["inputs"][0][1] = bad
        err = _load_error(tmp_path, graph)
        assert err.node == "flat"
        assert f"refers to output {bad} of 'split' (SliceChannel), which has {outputs} output(s)" in err.message
    graph["nodes"][flat]["inputs"][0] = [source, -1, 0]
    assert "must be between 0 and" in _load_error(tmp_path, graph).message


def test_variables_have_exactly_one_output(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "conv")]["inputs"][0][1] = 5
    assert "refers to output 5 of 'data' (variable), which has 1 output(s)" in _load_error(tmp_path, graph).message


@pytest.mark.parametrize("heads, expect", [
    ([], "has no outputs"), ("x", "has no outputs"), ([[10**6, 0, 0]], "refers to node 1000000"),
    ([[-1, 0, 0]], "refers to node -1"), ([[0, 7, 0]], "refers to output 7 of 'data'"),
])
def test_bad_heads_are_refused(tmp_path, heads, expect):
    graph = _graph()
    graph["heads"] = heads
    assert expect in _load_error(tmp_path, graph).message


@pytest.mark.parametrize("arg_nodes, expect", [
    ([10**6], "'arg_nodes' entry 1000000 is not a node index"), ([-1], "'arg_nodes' entry -1"),
    ("x", "'arg_nodes' must be a list"), ("conv", "which is an operator, not a variable"),
])
def test_bad_arg_nodes_are_refused(tmp_path, arg_nodes, expect):
    graph = _graph()
    graph["arg_nodes"] = [_index(graph, "conv")] if arg_nodes == "conv" else arg_nodes
    assert expect in _load_error(tmp_path, graph).message


def test_variables_with_inputs_load_as_mxnet_loads_them(tmp_path):
    """MXNet keeps a variable's ``inputs`` in the JSON and never reads them: the file runs."""
    graph = _graph()
    graph["nodes"][_index(graph, "conv_weight")]["inputs"] = [[0, 0, 0]]
    path = _write(tmp_path, graph)
    inputs = {"data": rand(1, 3, 6, 6)}
    params = random_params(_net(), inputs)
    expected = mxnet_forward(mx.sym.load(str(path)), params, inputs)[0]  # reference: MXNet runs it
    model = export(str(path), {k: mx.nd.array(v) for k, v in params.items()}, {"data": (1, 3, 6, 6)})
    np.testing.assert_allclose(onnx_forward(model, inputs)[0], expected, rtol=1e-5, atol=1e-6)


def test_unknown_op_is_unsupported_naming_node_and_op(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "fc")]["op"] = "NoSuchOp"
    err = _load_error(tmp_path, graph, UnsupportedOpError)
    assert err.exit_code == 3 and (err.node, err.op_type) == ("fc", "NoSuchOp")
    assert "NoSuchOp" not in mx.operator.get_all_registered_operators()


@pytest.mark.parametrize("key, value", [("kernel", "(3, 3"), ("kernel", "1e999"), ("num_filter", "(((("),
                                        ("num_filter", "[1,,2]"), ("cudnn_tune", "fastest_please")])
def test_malformed_attributes_name_node_and_attribute(tmp_path, key, value):
    graph = _graph()
    graph["nodes"][_index(graph, "conv")]["attrs"][key] = value
    err = _load_error(tmp_path, graph)
    assert (err.node, err.op_type) == ("conv", "Convolution")
    assert err.message.startswith(f"attribute {key}={value!r} is invalid")
    with pytest.raises(mx.base.MXNetError):  # reference: MXNet refuses the same value
        mx.sym.Convolution(data, **dict(graph["nodes"][_index(graph, "conv")]["attrs"]))


def _conv_params() -> dict:
    return {k: mx.nd.array(v) for k, v in random_params(_net(), {"data": rand(1, 3, 6, 6)}).items()}


def test_attribute_strings_are_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    graph = _graph()
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__shape__": code}
    path = _write(tmp_path, graph)
    # MXNet loads it and reads __shape__ only when inference has no shape for the input ...
    loaded, _ = loading.load_symbol(path)
    assert loaded.infer_shape(data=(1, 3, 6, 6))[1] == [(1, 3)]
    with pytest.raises(mx.base.MXNetError, match="Invalid attribute"):
        loaded.infer_shape_partial()
    # ... so the export refuses it only without --input-shape, in MXNet's words, naming the input
    with pytest.raises(ShapeError) as info:
        export(str(path), _conv_params(), verify=False, simplify=False)
    assert str(info.value).startswith(f"{path}: input 'data': MXNet cannot use its declared shape __shape__=")
    assert "Invalid attribute" in str(info.value) and "--input-shape data:" in str(info.value)
    assert export(str(path), _conv_params(), {"data": (1, 3, 6, 6)}, verify=True, simplify=False).graph.node
    graph = _graph()
    graph["nodes"][_index(graph, "conv")]["attrs"]["kernel"] = code
    err = _load_error(tmp_path, graph)
    assert err.node == "conv" and err.message.startswith(f"attribute kernel={code!r} is invalid")
    assert not marker.exists()


@pytest.mark.parametrize("value, shape", [("(1L, 3L, 6L, 6L)", (1, 3, 6, 6)), ("[1, 3, 6, 6]", (1, 3, 6, 6)),
                                          ("(0, 3, 6, 6)", (1, 3, 6, 6)), ("(1, 3, 6, 6)junk", (1, 3, 6, 6)),
                                          ("(2L,3L,6L,6L)", (2, 3, 6, 6))])
def test_declared_shape_is_read_as_mxnet_reads_it(tmp_path, value, shape):
    """The input plan takes the declared shape MXNet's inference takes (batch 0: any, exported at 1)."""
    graph = _graph()
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__shape__": value}
    path = _write(tmp_path, graph)
    loaded, _ = loading.load_symbol(path)
    mx_shape = loaded.infer_shape_partial()[0][0]  # reference: what MXNet reads
    assert tuple(mx_shape) == (shape[0] if value[:3] != "(0," else 0,) + shape[1:]
    model = export(str(path), _conv_params(), verify=True, simplify=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert tuple(dims) == shape


@pytest.mark.parametrize("value, reason", [("(3, 3", "Invalid attribute"), ("(1.5, 2)", "Invalid attribute"),
                                           ("(-2, 3, 6, 6)", "shape dim size must be >= -1")])
def test_declared_shape_mxnet_cannot_use_is_refused_with_its_reason_only_when_used(tmp_path, value, reason):
    graph = _graph()
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__shape__": value}
    path = _write(tmp_path, graph)
    loaded, _ = loading.load_symbol(path)
    with pytest.raises(mx.base.MXNetError, match=reason.replace("(", r"\(")):  # reference: MXNet, unshaped
        loaded.infer_shape_partial()
    with pytest.raises(ShapeError, match=f"input 'data': MXNet cannot use its declared shape .*{reason}"):
        export(str(path), _conv_params(), verify=False, simplify=False)
    assert export(str(path), _conv_params(), {"data": (1, 3, 6, 6)}, verify=True, simplify=False).graph.node


def test_declared_shapes_mxnet_would_misread_are_refused_on_loading(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__shape__": "(2147483648L, 3L, 6L, 6L)"}
    mx_shape = mx.sym.var("data", attr={"__shape__": "(2147483648L, 3L)"}).infer_shape_partial()[0][0]
    assert mx_shape[0] < 0  # reference: MXNet wraps the dimension to a negative size
    assert "a dimension exceeds 2**31-1" in _load_error(tmp_path, graph).message


@pytest.mark.parametrize("value, dtype", [("0", np.float32), ("0L", np.float32), ("1", np.float64),
                                          (" 2", np.float16), ("-1", np.float32)])
def test_declared_dtype_is_read_as_mxnet_reads_it(tmp_path, value, dtype):
    graph = _graph()
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__dtype__": value}
    path = _write(tmp_path, graph)
    loaded, _ = loading.load_symbol(path)
    mx_type = loaded.infer_type_partial()[0][0]  # reference: MXNet's reading (-1: unknown)
    assert mx_type == (None if value == "-1" else dtype)
    from x2onnx.mxnet.export import export_report

    report = export_report(str(path), {k: v.astype(np.dtype(dtype)) for k, v in _conv_params().items()},
                           {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
    assert report.inputs.dtypes["data"] == np.dtype(dtype)


def test_declared_dtype_must_be_an_mxnet_type_flag_where_it_is_used(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__dtype__": "99"}
    path = _write(tmp_path, graph)
    loading.load_symbol(path)  # MXNet loads it too
    with pytest.raises(ModelLoadError, match="__dtype__='99' is not an MXNet type flag"):
        export(str(path), _conv_params(), {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
    graph["nodes"][_index(graph, "data")]["attrs"] = {"__dtype__": "float32"}  # MXNet cannot read it either
    path = _write(tmp_path, graph)
    with pytest.raises(mx.base.MXNetError, match="Invalid attribute"):
        loading.load_symbol(path)[0].infer_type_partial()
    with pytest.raises(ModelLoadError, match="MXNet cannot use its declared __dtype__='float32' .*Invalid attribute"):
        export(str(path), _conv_params(), {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
    model = export(str(path), _conv_params(), {"data": (1, 3, 6, 6)}, input_dtypes={"data": "float32"},
                   verify=False, simplify=False)
    assert model.graph.input[0].type.tensor_type.elem_type == 1
    # reference: the flags are MXNet's own numbering
    from mxnet.ndarray.ndarray import _DTYPE_MX_TO_NP

    for flag, name in validate.MXNET_TYPE_FLAGS.items():
        if name != "bfloat16":
            assert np.dtype(_DTYPE_MX_TO_NP[flag]).name == name


def test_count_attributes_are_bounded_before_mxnet_allocates(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "split")]["attrs"]["num_outputs"] = str(10**9)
    err = _load_error(tmp_path, graph)
    assert err.node == "split" and "num_outputs='1000000000'" in err.message


def test_input_count_must_match_the_op(tmp_path):
    graph = _graph()
    graph["nodes"][_index(graph, "conv")]["inputs"] = graph["nodes"][_index(graph, "conv")]["inputs"][:1]
    err = _load_error(tmp_path, graph)
    reference = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="c").list_arguments()
    assert len(reference) == 3
    assert err.node == "conv" and "has 1 input(s), but Convolution with these attributes takes 3" in err.message


def test_valid_symbol_with_pair_references_loads_like_mxnet(tmp_path):
    sym = _net()
    graph = json.loads(sym.tojson())
    for node in graph["nodes"]:
        node["inputs"] = [e[:2] for e in node["inputs"]]
    graph["heads"] = [e[:2] for e in graph["heads"]]
    loaded, _ = loading.load_symbol(_write(tmp_path, graph))
    assert loaded.list_arguments() == sym.list_arguments()
    assert loaded.infer_shape(data=(1, 3, 6, 6)) == sym.infer_shape(data=(1, 3, 6, 6))


def _declared_convnet_files(tmp_path: Path, graph: dict) -> tuple[Path, dict, dict]:
    """The JSON written out, MXNet's own params for the net, and a seeded input."""
    sym = declared_convnet()
    inputs = {"data": rand(1, 3, 16, 16)}
    params = {k: v for k, v in random_params(sym, inputs).items() if k != "softmax_label"}
    path = tmp_path / "net-symbol.json"
    path.write_text(json.dumps(graph))
    return path, params, inputs


def _mxnet_reference(path: Path, params: dict, inputs: dict) -> np.ndarray:
    """MXNet 1.9.1 itself on the file: its loader (with the legacy upgrade), bind and forward."""
    sym = mx.sym.load(str(path))
    args = {k: v for k, v in params.items() if k in sym.list_arguments() + sym.list_auxiliary_states()}
    return mxnet_forward(sym, {**args, "softmax_label": np.zeros((1,), np.float32)}, inputs)[0]


def test_python2_long_suffixes_load_bind_and_export_like_mxnet(tmp_path):
    graph = python2_style(json.loads(declared_convnet().tojson()))
    attrs = {n["name"]: n.get("attrs", {}) for n in graph["nodes"]}
    assert attrs["data"]["__shape__"] == "(1L, 3L, 16L, 16L)"
    assert attrs["conv0_weight"]["__shape__"] == "(8L, 3L, 3L, 3L)"
    assert attrs["conv0"]["kernel"] == "(3L, 3L)" and attrs["flat0"]["shape"] == "(0L, -1L)"
    path, params, inputs = _declared_convnet_files(tmp_path, graph)
    expected = _mxnet_reference(path, params, inputs)  # MXNet loads, infers and binds it
    assert expected.shape == (1, 10)
    model = export(str(path), {k: mx.nd.array(v) for k, v in params.items()})  # declared shape, verified
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 16, 16]
    np.testing.assert_allclose(onnx_forward(model, inputs)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("node, key, expect", [("conv0", "num_filter", "int (non-negative)"),
                                               ("concat", "num_args", "int")])
def test_long_suffix_on_a_scalar_is_refused_with_mxnets_reason(tmp_path, node, key, expect):
    """``str(8L)`` is ``'8'`` in Python 2; a hand-written ``'8L'`` is refused by MXNet's int reader."""
    net = declared_convnet()
    if node == "concat":
        net = mx.sym.Concat(data, data, num_args=2, name="concat")
    graph = python2_style(json.loads(net.tojson()))
    graph["nodes"][_index(graph, node)]["attrs"][key] = "8L"
    with pytest.raises(mx.base.MXNetError) as reference:
        mx.sym.load_json(json.dumps(graph))
    err = _load_error(tmp_path, graph)
    assert err.node == node
    reason = f"Invalid Parameter format for {key} expect {expect} but value='8L'"
    assert reason in str(reference.value) and err.message == f"attribute {key}='8L' is invalid: {reason}"


@pytest.mark.parametrize("style", sorted(STYLES))
def test_symbols_in_every_mxnet_json_layout_load_and_export(tmp_path, style):
    """0.8 (``param``, ``backward_source_id``, pairs, no auxiliary variables, hidden keys without
    underscores), 0.9-0.12 (``attr``), 1.x (``attrs``), all with Python-2 tuples: what MXNet's
    loader accepts (and upgrades) loads and exports, verified, to MXNet's numbers."""
    graph = json.loads(declared_convnet().tojson())
    conv = graph["nodes"][_index(graph, "conv0")]
    conv["attrs"].update({"__ctx_group__": "stage1", "__lr_mult__": "0.5"})
    graph["nodes"][_index(graph, "conv0_weight")]["attrs"].update({
        "__lr_mult__": "1.0", "__wd_mult__": "0.0", "__init__": '["normal", {"sigma": 0.01}]', "__dtype__": "0",
        "__storage_type__": "0", "__profiler_scope__": "stage1:"})
    graph = legacy_style(python2_style(graph), style)
    if style == "0.8":
        graph["nodes"][_index(graph, "conv0")]["attr"]["weight_lr_mult"] = "2"
    path, params, inputs = _declared_convnet_files(tmp_path, graph)
    reference = mx.sym.load(str(path))
    loaded, _ = loading.load_symbol(path)
    assert loaded.list_arguments() == reference.list_arguments() == declared_convnet().list_arguments()
    assert loaded.list_auxiliary_states() == reference.list_auxiliary_states() == ["bn0_moving_mean", "bn0_moving_var"]
    expected = _mxnet_reference(path, params, inputs)
    model = export(str(path), {k: mx.nd.array(v) for k, v in params.items()})
    np.testing.assert_allclose(onnx_forward(model, inputs)[0], expected, rtol=1e-5, atol=1e-6)


def test_mxnet_08_ops_and_parameters_load_and_export(tmp_path):
    """0.8 names: ``Softmax`` (SoftmaxOutput), ``ElementWiseSum``, Reshape's ``target_shape``."""
    nodes = [{"op": "null", "param": {}, "name": n, "inputs": [], "backward_source_id": -1}
             for n in ("data", "fc_weight", "fc_bias")]
    nodes += [
        {"op": "FullyConnected", "param": {"num_hidden": "6", "no_bias": "False"}, "name": "fc",
         "inputs": [[0, 0], [1, 0], [2, 0]], "backward_source_id": -1},
        {"op": "Reshape", "param": {"target_shape": "(0L, 2L, 3L)"}, "name": "rs", "inputs": [[3, 0]],
         "backward_source_id": -1},
        {"op": "Flatten", "param": {}, "name": "flat", "inputs": [[4, 0]], "backward_source_id": -1},
        {"op": "ElementWiseSum", "param": {"num_args": "2"}, "name": "sum", "inputs": [[5, 0], [3, 0]],
         "backward_source_id": -1},
        {"op": "null", "param": {}, "name": "lbl", "inputs": [], "backward_source_id": -1},
        {"op": "Softmax", "param": {"grad_scale": "1"}, "name": "prob", "inputs": [[6, 0], [7, 0]],
         "backward_source_id": -1},
    ]
    path = _write(tmp_path, {"nodes": nodes, "arg_nodes": [0, 1, 2, 7], "heads": [[8, 0]]})
    reference = mx.sym.load(str(path))
    inputs = {"data": rand(2, 4)}
    params = random_params(reference, inputs)
    expected = mxnet_forward(reference, params, inputs)[0]
    model = export(str(path), {k: mx.nd.array(v) for k, v in params.items() if k != "lbl"}, {"data": (2, 4)})
    assert [i.name for i in model.graph.input] == ["data"]
    np.testing.assert_allclose(onnx_forward(model, inputs)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["det1", "det2", "det3", "det4"])
def test_real_legacy_mtcnn_symbols_pass_validation(name):
    path = require(MTCNN / f"{name}-symbol.json")
    loaded, _ = loading.load_symbol(path)
    reference = mx.sym.load(str(path))
    assert loaded.list_arguments() == reference.list_arguments()
    assert loaded.list_outputs() == reference.list_outputs()


# --- .params reader ------------------------------------------------------------------------------

def _saved(tmp_path: Path, arrays) -> bytes:
    path = tmp_path / "x.params"
    mx.nd.save(str(path), arrays)
    return path.read_bytes()


def test_reader_matches_mx_nd_load(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"arg:w": mx.nd.array(rng.standard_normal((2, 3, 4)).astype(np.float32)),
              "aux:h": mx.nd.array(rng.standard_normal(5).astype(np.float16), dtype="float16"),
              "d": mx.nd.array(rng.standard_normal((1, 1)), dtype="float64"),
              "i": mx.nd.array(rng.integers(-9, 9, (3, 2)), dtype="int64"),
              "u": mx.nd.array(rng.integers(0, 255, 7), dtype="uint8"),
              "b": mx.nd.array(np.array([True, False]), dtype="bool")}
    raw = _saved(tmp_path, arrays)
    content = read_params_file(raw)
    reference = mx.nd.load(str(tmp_path / "x.params"))
    assert content.names == list(reference)
    for name, array in zip(content.names, content.arrays):
        ref = reference[name]
        assert array.dtype == ref.dtype and array.shape == ref.shape
        np.testing.assert_array_equal(array, ref.asnumpy())


@pytest.mark.parametrize("name", ["det1", "det4"])
def test_reader_reads_mxnet_08_params_like_mx_nd_load(name):
    path = require(MTCNN / f"{name}-0001.params")
    content = read_params_file(path.read_bytes())
    reference = mx.nd.load(str(path))
    assert content.names == list(reference)
    for array, ref in zip(content.arrays, reference.values()):
        np.testing.assert_array_equal(array, ref.asnumpy())


def _one_array_file(tmp_path: Path) -> bytes:
    return _saved(tmp_path, {"arg:w": mx.nd.array(np.arange(6, dtype=np.float32).reshape(2, 3))})


# offsets in a one-array file: 24 array magic, 28 stype, 32 ndim, 36 dims (2 x int64), 52 dev, 60 dtype
@pytest.mark.parametrize("offset, fmt, value, expect", [
    (0, "<Q", 0x113, "not a .params file: magic 0x113"),
    (16, "<Q", 10**9, "claims 1000000000 arrays"),
    (24, "<I", 0xDEADBEEF, "does not start with an NDArray magic number"),
    (28, "<i", 1, "sparse (row_sparse) array"),
    (28, "<i", 7, "unknown storage type 7"),
    (32, "<i", -1, "has -1 dimensions"),
    (32, "<i", 1000, "has 1000 dimensions"),
    (36, "<q", -1, "negative dimension"),
    (36, "<q", 2**40, "needs 13194139533312 bytes"),
    (60, "<i", 13, "unknown dtype flag 13"),
    (60, "<i", -1, "unknown dtype flag -1"),
])
def test_corrupt_params_fields_are_refused_before_mxnet(tmp_path, offset, fmt, value, expect):
    raw = bytearray(_one_array_file(tmp_path))
    assert struct.unpack_from("<2q", raw, 36) == (2, 3) and struct.unpack_from("<i", raw, 60) == (0,)
    struct.pack_into(fmt, raw, offset, value)
    with pytest.raises(ModelLoadError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        read_params_file(bytes(raw), "x.params")


def test_every_truncation_is_a_clean_error(tmp_path):
    raw = _one_array_file(tmp_path)
    assert read_params_file(raw).arrays[0].shape == (2, 3)
    for cut in range(len(raw)):
        with pytest.raises(ModelLoadError, match="cannot read MXNet params"):
            read_params_file(raw[:cut], "x.params")


def test_name_count_must_match_array_count(tmp_path):
    raw = bytearray(_one_array_file(tmp_path))
    names_at = 24 + 4 + 4 + 4 + 16 + 8 + 4 + 6 * 4
    assert struct.unpack_from("<Q", raw, names_at) == (1,)
    struct.pack_into("<Q", raw, names_at, 2)
    with pytest.raises(ModelLoadError, match="1 arrays but 2 names"):
        read_params_file(bytes(raw))


# --- parameters against the symbol -----------------------------------------------------------------

def _conv_net():
    return mx.sym.FullyConnected(mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv"), num_hidden=3,
                                 name="fc")


def _saved_model(tmp_path: Path, sym, params: dict) -> tuple[Path, Path]:
    sym_path, params_path = tmp_path / "net-symbol.json", tmp_path / "net-0000.params"
    sym.save(str(sym_path))
    mx.nd.save(str(params_path), {f"arg:{k}": mx.nd.array(v, dtype=v.dtype) for k, v in params.items()})
    return sym_path, params_path


def test_wrong_weight_shape_names_parameter_expected_and_given(tmp_path):
    sym = _conv_net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    expected = dict(zip(sym.list_arguments(), sym.infer_shape(data=(1, 3, 6, 6))[0]))["conv_weight"]
    params["conv_weight"] = np.zeros((4, 3, 2, 2), np.float32)
    sym_path, params_path = _saved_model(tmp_path, sym, params)
    with pytest.raises(ShapeError) as info:
        export(str(sym_path), str(params_path), {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
    assert str(info.value) == (f"{params_path}: parameter 'conv_weight' has shape (4, 3, 2, 2), but the network "
                               f"needs {tuple(expected)} there (with input shape(s) data:1,3,6,6)")


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_float_weights_of_another_width_are_cast_and_verified(tmp_path, caplog, dtype):
    sym = _conv_net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    params["conv_weight"] = params["conv_weight"].astype(dtype)
    sym_path, params_path = _saved_model(tmp_path, sym, params)
    with caplog.at_level(logging.WARNING):
        model = export(str(sym_path), str(params_path), {"data": (1, 3, 6, 6)}, verify=True, simplify=False)
    assert f"parameter 'conv_weight' is {dtype}; casting it to float32" in caplog.text
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    stored = next(v for k, v in weights.items() if "conv_weight" in k)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, params["conv_weight"].astype(np.float32))


@pytest.mark.parametrize("dtype", ["int32", "uint8"])
def test_integer_weights_for_float_layers_are_refused(tmp_path, dtype):
    sym = _conv_net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    params["fc_bias"] = params["fc_bias"].astype(dtype)
    sym_path, params_path = _saved_model(tmp_path, sym, params)
    with pytest.raises(ModelLoadError) as info:
        export(str(sym_path), str(params_path), {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
    assert str(info.value) == (f"{params_path}: parameter 'fc_bias' has dtype {dtype}, but the network needs "
                               "float32 there (with input dtype(s) data:float32)")


def test_extra_arrays_warn_and_are_ignored(tmp_path, caplog):
    sym = _conv_net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    params["unexpected_weight"] = np.zeros((3, 3), np.float32)
    sym_path, params_path = _saved_model(tmp_path, sym, params)
    with caplog.at_level(logging.WARNING):
        model = export(str(sym_path), str(params_path), {"data": (1, 3, 6, 6)}, verify=True, simplify=False)
    assert "does not use parameter(s) 'unexpected_weight'" in caplog.text
    assert not [t for t in model.graph.initializer if "unexpected" in t.name]


def test_wrong_rank_against_declared_shape_names_the_input(tmp_path):
    sym = mx.sym.Convolution(mx.sym.var("data", shape=(1, 3, 6, 6)), kernel=(3, 3), num_filter=4, name="conv")
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    sym_path, params_path = _saved_model(tmp_path, sym, params)
    with pytest.raises(ShapeError) as info:
        export(str(sym_path), str(params_path), {"data": (1, 3, 6)}, verify=False, simplify=False)
    assert str(info.value).startswith(f"{sym_path}: input 'data' has rank 3 (1,3,6), but the symbol declares rank 4")


def test_inference_errors_become_one_line_naming_the_operator(tmp_path, capfd):
    sym = _conv_net()
    sym_path, params_path = _saved_model(tmp_path, sym, random_params(sym, {"data": rand(1, 3, 6, 6)}))
    with pytest.raises(mx.base.MXNetError):  # reference: MXNet refuses a 2x2 image for a 3x3 kernel
        sym.infer_shape(data=(1, 3, 2, 2))
    capfd.readouterr()
    code = main(["mxnet", str(sym_path), str(params_path), "--input-shape", "data:1,3,2,2", "-o",
                 str(tmp_path / "o.onnx")])
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and not out.strip(), (out, err)
    assert lines[0].startswith(f"error: {sym_path}: conv: input shape(s) data:1,3,2,2 do not fit the network: "
                               "Check failed")
    assert not (tmp_path / "o.onnx").exists()


def test_cli_refuses_a_crashing_output_index_with_one_line(tmp_path, capfd):
    sym = _conv_net()
    sym_path, params_path = _saved_model(tmp_path, sym, random_params(sym, {"data": rand(1, 3, 6, 6)}))
    graph = json.loads(sym_path.read_text())
    graph["nodes"][_index(graph, "fc")]["inputs"][0][1] = 10**9
    sym_path.write_text(json.dumps(graph))
    code = main(["mxnet", str(sym_path), str(params_path), "--input-shape", "data:1,3,6,6", "-o",
                 str(tmp_path / "o.onnx")])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and lines == [f"error: {sym_path}: fc (FullyConnected): input [3, 1000000000, 0] refers to "
                                   "output 1000000000 of 'conv' (Convolution), which has 1 output(s)"]
