"""The shared reader of MXNet attribute strings (common/mxnet_attrs.py) against MXNet 1.9.1 itself.

Reference: MXNet's own C++ readers, asked through operators whose output shape or value shows
what they read: ``_zeros(shape=...)`` for tuples, ``one_hot(depth=...)`` for integers,
``_full(value=...)`` for floats, ``sum(keepdims=...)`` for booleans, ``argmax(axis=...)`` for
``int or None``, and a variable's ``__shape__``/``__dtype__`` for the inference passes.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from common.mxnet_attrs import (AttrParseError, canonical, parse_bool, parse_float, parse_int, parse_literal,
                                parse_optional_int, parse_tuple)
from tests.support.mxnet_ops import mx


def _node_symbol(op: str, attrs: dict, n_inputs: int = 0):
    nodes = [{"op": "null", "name": f"in{i}", "inputs": []} for i in range(n_inputs)]
    nodes.append({"op": op, "name": "x", "attrs": attrs, "inputs": [[i, 0, 0] for i in range(n_inputs)]})
    graph = {"nodes": nodes, "arg_nodes": list(range(n_inputs)), "heads": [[n_inputs, 0, 0]],
             "attrs": {"mxnet_version": ["int", 10901]}}
    return mx.sym.load_json(json.dumps(graph))


def _mxnet(read):
    """MXNet's reading (a shape or a value), or None when MXNet refuses the string."""
    try:
        return read()
    except mx.base.MXNetError:
        return None


def _ours(parse, text):
    try:
        return parse(text)
    except AttrParseError:
        return None


TUPLES = ["(8L, 3L, 3L, 3L)", "(8L,)", "[1L,2L]", "(1 L, 2)", "3", "(2,3) ", " (2, 3)", "()", "[]", "( )",
          "(2, 3,)", "(+2, 3)", "( 2 , 3 )", "(1, 2]", "3L", "-1L", "(2,3)abc", "(None, 2)", "(2,,3)", "(2.5, 3)",
          "(2l, 3)", "(2LL, 3)", "(2, 3", "(0x10,)", "2,3", "(2;3)", "(,)", "((1,2))", "(1)(2)", "", "abc"]


@pytest.mark.parametrize("text", TUPLES)
def test_tuples_read_like_mxnets_shape_parameters(text):
    expected = _mxnet(lambda: _node_symbol("_zeros", {"shape": text}).infer_shape_partial()[1][0])
    got = _ours(parse_tuple, text)
    assert (got is None) == (expected is None), (got, expected)
    if got is not None:
        assert tuple(got) == tuple(expected)


@pytest.mark.parametrize("text", ["(1L, 3L, 8L, 8L)", "(1, 3, 8, 8)", "[1, 3, 8, 8]", "(0, 3, 8, 8)", "(2,3)abc",
                                  "3L", "()", "1e999", "(3, 3", "(1.5, 2)", "(True, 3)", "abc"])
def test_declared_shapes_read_like_mxnets_shape_inference(text):
    """``__shape__`` is read by the inference pass: the leading tuple, the rest ignored."""
    expected = _mxnet(lambda: mx.sym.var("data", attr={"__shape__": text}).infer_shape_partial()[0][0])
    got = _ours(lambda t: parse_tuple(t, stream=True), text)
    assert (got is None) == (expected is None), (got, expected)
    if got is not None:
        assert tuple(got) == tuple(expected)


@pytest.mark.parametrize("text", ["8", " 8", "8 ", "+8", "08", "2147483647", "8L", "8.0", "0x8", "True", "None",
                                  "1e1", "(8,)", "8 9", "2147483648", "", " "])
def test_integers_read_like_mxnets_int_parameters(text):
    expected = _mxnet(lambda: _node_symbol("one_hot", {"depth": text}, 1).infer_shape(in0=(2,))[1][0][1])
    assert _ours(parse_int, text) == expected


@pytest.mark.parametrize("text", ["1", "1.5", "1.5f", "1e-3", ".5", "5.", "inf", "-Infinity", "nan", " 2", ".", "e5",
                                  "+", "1e", "+.5e+1", "INF", "nan(abc)", "1L", "2 ", "2x", "1e999", "True", "None",
                                  "(1.5)", "0x10", "infinityx", "1,5", ""])
def test_floats_read_like_mxnets_double_parameters(text):
    def run():
        executor = _node_symbol("_full", {"shape": "(1,)", "value": text}).bind(mx.cpu(), {})
        return float(executor.forward()[0].asnumpy()[0])

    expected = _mxnet(run)
    got = _ours(parse_float, text)
    assert (got is None) == (expected is None), (got, expected)
    if got is not None:
        assert (math.isnan(got) and math.isnan(expected)) or np.float32(got) == np.float32(expected)


@pytest.mark.parametrize("text", ["True", "true", "TRUE", "1", "0", "False", "1L", " True", "True ", "yes", "None",
                                  "2", "1.0"])
def test_booleans_read_like_mxnets_boolean_parameters(text):
    shape = _mxnet(lambda: _node_symbol("sum", {"keepdims": text, "axis": "1"}, 1).infer_shape(in0=(2, 3))[1][0])
    expected = None if shape is None else len(shape) == 2
    assert _ours(parse_bool, text) == expected


@pytest.mark.parametrize("text", ["None", "1", "1L", "-1", " 1", "0", "none", "(1,)", "1LL"])
def test_optional_integers_read_like_mxnets_int_or_none_parameters(text):
    def shape(value):
        return _mxnet(lambda: _node_symbol("argmax", {"axis": value}, 1).infer_shape(in0=(2, 3))[1][0])

    expected = shape(text)
    got = _ours(parse_optional_int, text)
    assert (got is None and text.strip() != "None") == (expected is None)
    if expected is not None:
        assert shape(str(got)) == expected  # MXNet reads our value the way it read the text


@pytest.mark.parametrize("text, type_text, written", [
    ("(8L, 3L)", "Shape(tuple), required", "(8, 3)"), ("(8L,)", "Shape(tuple)", "(8,)"), ("3", "Shape(tuple)", "(3,)"),
    ("TRUE", "boolean, optional, default=0", "True"), ("0", "boolean", "False"), (" 8", "int (non-negative)", "8"),
    ("1.5f", "float, optional", "1.5"), ("1L", "int or None", "1"), ("None", "Shape or None", "None"),
    ("(None, 2L)", "Shape(tuple)", "(None, 2)"), ("relu", "{'relu', 'tanh'}, required", "relu"),
    ("8L", "int", "8L"),  # MXNet refuses it: left as written, MXNet's probe reports it
])
def test_canonical_writes_values_as_python3_mxnet_does(text, type_text, written):
    assert canonical(text, type_text) == written


def test_canonical_attributes_mean_what_mxnet_read():
    """Every rewrite is read by MXNet to the same operator output as the original text."""
    data = np.random.default_rng(0).uniform(-1, 1, (1, 2, 6, 6)).astype(np.float32)
    weight = np.random.default_rng(1).uniform(-1, 1, (3, 2, 3, 3)).astype(np.float32)
    attrs = {"kernel": "(3L, 3L)", "stride": "[2L,1L]", "pad": "(1L, 0L)", "num_filter": " 3", "no_bias": "TRUE"}
    from mx2onnx_patches.attr_defaults import mxnet_types

    types = mxnet_types("Convolution")
    rewritten = {k: canonical(v, types[k]) for k, v in attrs.items()}
    assert rewritten == {"kernel": "(3, 3)", "stride": "(2, 1)", "pad": "(1, 0)", "num_filter": "3", "no_bias": "True"}
    outputs = []
    for table in (attrs, rewritten):
        executor = _node_symbol("Convolution", table, 2).bind(mx.cpu(), {"in0": mx.nd.array(data),
                                                                         "in1": mx.nd.array(weight)})
        outputs.append(executor.forward()[0].asnumpy())
    assert outputs[0].shape == (1, 3, 3, 4)
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("text, value", [("3", 3), ("(3L, 4L)", (3, 4)), ("1e-3", 0.001), ("True", True),
                                         ("None", None), ("(0.5, 1.5)", (0.5, 1.5)), ("(None, 2)", (None, 2))])
def test_literal_of_unknown_type(text, value):
    assert parse_literal(text) == value


def test_literal_refuses_what_no_mxnet_reader_accepts():
    for text in ("__import__('os')", "(1|2)", "[1, 'a']"):
        with pytest.raises(AttrParseError):
            parse_literal(text)


@pytest.mark.parametrize("text", ["(0.5, 0.25)", "0.5", "(1, 2)", "[0.5]", "(.5,)", "(0.5L, 0.25)", "(0.5f,)",
                                  "(inf,)", "(None,)"])
def test_float_tuples_read_like_mxnets_tuple_of_float_parameters(text):
    def anchors(value):
        return _mxnet(lambda: _node_symbol("_contrib_MultiBoxPrior", {"sizes": value}, 1).bind(
            mx.cpu(), {"in0": mx.nd.zeros((1, 1, 2, 2))}).forward()[0].asnumpy())

    expected = anchors(text)
    got = _ours(lambda t: parse_tuple(t, "float"), text)
    assert (got is None) == (expected is None), (got, text)
    if got is not None:  # MXNet reads the value we read to the same anchors
        np.testing.assert_array_equal(anchors(canonical(text, "tuple of <float>")), expected)
        assert canonical(text, "tuple of <float>") == "(" + ", ".join(repr(float(v)) for v in got) + \
            ("," if len(got) == 1 else "") + ")"
