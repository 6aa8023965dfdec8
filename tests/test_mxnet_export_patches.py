"""mx2onnx_patches machinery and compatibility repairs: apply/remove, onnx.mapping, literal_eval, opset stamp."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest

import mx2onnx_patches as patches
from mx2onnx_patches import literal_eval
from tests.support.mxnet_ops import mx, mxnet_forward, onnx_forward, rand, random_params

from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph  # noqa: E402  (after numpy aliases)
from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as op12  # noqa: E402

data = mx.sym.var("data")


def _conv_net():
    net = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, pad=(1, 1), name="conv")
    net = mx.sym.Activation(net, act_type="relu", name="relu")
    return mx.sym.mean(net, axis=(2, 3), name="gap")  # a Reduce with an ``axes`` attribute at opset 13


def _stock_state():
    return (MXNetGraph.__dict__["create_onnx_graph_proto"], MXNetGraph.__dict__["convert_layer"],
            {v: dict(t) for v, t in MXNetGraph.registry_.items()}, op12.parse_helper, getattr(onnx, "mapping", None))


def test_apply_is_idempotent_and_its_context_restores_the_stock_exporter():
    with patches.stock():
        before = _stock_state()
        with patches.apply() as applied:
            assert set(applied.installed) == set(patches.REPAIRS) | {"translations"}
            patched = _stock_state()
            assert patched[0] is not before[0] and patched[1] is not before[1]
            assert patched[3] is literal_eval.parse_helper
            assert hasattr(onnx.mapping, "NP_TYPE_TO_TENSOR_TYPE")
            again = patches.apply()  # idempotent: installs nothing, removes nothing on exit
            assert again.installed == []
            with again:
                pass
            assert _stock_state()[0] is patched[0]
        after = _stock_state()
    assert after[0] is before[0] and after[1] is before[1] and after[3] is before[3]
    assert after[2] == before[2]
    assert after[4] is before[4]


def test_stock_context_removes_and_restores_repairs():
    patches.apply()
    assert "graph_builder" in patches.installed_repairs()
    with patches.stock():
        assert patches.installed_repairs() == []
    assert set(patches.installed_repairs()) == set(patches.REPAIRS) | {"translations"}


def test_onnx_mapping_stand_in_matches_onnx_helper():
    module = __import__("mx2onnx_patches.onnx_mapping", fromlist=["x"]).build_mapping_module()
    for dtype in (np.float32, np.float16, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_):
        code = module.NP_TYPE_TO_TENSOR_TYPE[np.dtype(dtype)]
        assert code == onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        assert module.TENSOR_TYPE_TO_NP_TYPE[code] == np.dtype(dtype)
    with patches.stock():
        with patches.apply(only=["onnx_mapping"]):
            from onnx import mapping  # the import MXNet's export_model does

            assert mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype("float32")] == onnx.TensorProto.FLOAT
            assert "onnx.mapping" in sys.modules
        assert "onnx.mapping" not in sys.modules and getattr(onnx, "mapping", None) is None


def test_literal_eval_parses_what_eval_parsed_and_refuses_expressions():
    attrs = {"pad": "(1, 2)", "legacy": "(2L, 3L)", "expr": "(1|2)", "text": "abc"}
    assert literal_eval.parse_helper(attrs, "pad") == (1, 2)
    assert literal_eval.parse_helper(attrs, "legacy") == (2, 3)
    assert literal_eval.parse_helper(attrs, "text", "alt") == "alt"
    assert literal_eval.parse_helper(attrs, "missing", (9,)) == (9,)
    with patches.stock():
        assert op12.parse_helper(attrs, "expr") == 3  # MXNet's eval computes a bitwise or
    with pytest.raises(AttributeError, match="Malformed expr"):
        literal_eval.parse_helper(attrs, "expr")


@pytest.mark.parametrize("opset", [12, 13, 15, 17, 18, 21, 24])
def test_opset_is_stamped_in_model_ir_and_checker(opset):
    """12/13: MXNet's own forms; higher: valid as emitted, or upgraded by onnx's version converter
    where a node's opset-13 form is gone (the ReduceMean ``axes`` attribute became an input at 18)."""
    from x2onnx.mxnet import export

    sym = _conv_net()
    inputs = {"data": rand(1, 3, 6, 6)}
    params = random_params(sym, inputs)
    model = export(sym, {k: mx.nd.array(v) for k, v in params.items()}, {"data": (1, 3, 6, 6)}, opset=opset,
                   simplify=False, verify=False)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
    assert model.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    reduce = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    assert ("axes" in [a.name for a in reduce.attribute]) == (opset < 18)
    np.testing.assert_allclose(onnx_forward(model, inputs)[0], mxnet_forward(sym, params, inputs)[0],
                               atol=1e-5, rtol=1e-5)


def test_graph_builder_names_the_node_invalid_at_the_requested_opset(monkeypatch):
    """Without the upgrade step, the structural check refuses an opset-13 form at 18, naming the node."""
    from onnx import helper

    from common.errors import ConversionFailure
    from mx2onnx_patches import graph_builder

    patches.apply()

    def mean_as_opset13(node, **kwargs):  # ReduceMean with an ``axes`` attribute, whatever the opset
        source = node["inputs"][0]
        tensor = kwargs["outputs_lookup"][source[0]][source[1]].name
        return [helper.make_node("ReduceMean", [tensor], [node["name"]], name="gap_node", axes=[2, 3], keepdims=0)]

    for table in MXNetGraph.registry_.values():
        if "mean" in table:
            monkeypatch.setitem(table, "mean", mean_as_opset13)
    sym = _conv_net()
    params = {k: mx.nd.array(v) for k, v in random_params(sym, {"data": rand(1, 3, 6, 6)}).items()}
    graph_builder.build_graph(sym, params, {"data": (1, 3, 6, 6)}, opset=17)  # valid there
    with pytest.raises(ConversionFailure) as failure:
        graph_builder.build_graph(sym, params, {"data": (1, 3, 6, 6)}, opset=18)
    assert str(failure.value).startswith("gap_node (ReduceMean): the exported graph is not valid ONNX at opset 18")


@pytest.mark.parametrize("opset", [11, 99])
def test_opset_out_of_range_is_refused(opset):
    from common.errors import ConversionError
    from x2onnx.mxnet import export

    sym = _conv_net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    with pytest.raises(ConversionError, match=f"opset {opset} is not supported"):
        export(sym, {k: mx.nd.array(v) for k, v in params.items()}, {"data": (1, 3, 6, 6)}, opset=opset,
               simplify=False, verify=False)


def test_stock_export_model_runs_with_only_the_compatibility_shims(tmp_path):
    """The benchmark baseline: MXNet's own export_model, shims only, loads in onnxruntime and matches."""
    sym = _conv_net()
    inputs = {"data": rand(1, 3, 6, 6)}
    params = random_params(sym, inputs)
    nd_params = {k: mx.nd.array(v) for k, v in params.items()}
    with patches.stock():
        with patches.apply(only=patches.COMPAT_REPAIRS):
            import mxnet.onnx

            path = mxnet.onnx.export_model(sym, nd_params, [(1, 3, 6, 6)], np.float32,
                                           str(tmp_path / "stock.onnx"), opset_version=13)
    model = onnx.load(path)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version == 7
    # stock behaviour kept: weights are float lists and also graph inputs
    assert any(t.float_data for t in model.graph.initializer)
    feeds = {**inputs, **{k: v for k, v in params.items() if k in {i.name for i in model.graph.input}}}
    import onnxruntime as ort

    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(got[0], mxnet_forward(sym, params, inputs)[0], atol=1e-5, rtol=1e-5)


def test_graph_builder_passes_shapes_to_translations():
    from mx2onnx_patches import graph_builder
    from mx2onnx_patches.attr_defaults import registered_translation
    from x2onnx.mxnet import export

    patches.apply()
    original = registered_translation("Activation", 13)
    seen = {}

    def spy(node, **kwargs):
        seen["in"] = graph_builder.input_shape(kwargs, node, 0)
        seen["out"] = graph_builder.output_shape(kwargs, node, 0)
        seen["weight"] = kwargs["mx_shapes"]["conv_weight"]
        return original(node, **kwargs)

    sym = _conv_net()
    params = random_params(sym, {"data": rand(2, 3, 5, 7)})
    saved = {v: t["Activation"] for v, t in MXNetGraph.registry_.items() if "Activation" in t}
    try:
        for version in saved:
            MXNetGraph.registry_[version]["Activation"] = spy
        export(sym, {k: mx.nd.array(v) for k, v in params.items()}, {"data": (2, 3, 5, 7)}, simplify=False,
               verify=False)
    finally:
        for version, fn in saved.items():
            MXNetGraph.registry_[version]["Activation"] = fn
    assert seen == {"in": (2, 4, 5, 7), "out": (2, 4, 5, 7), "weight": (4, 3, 3, 3)}
