"""Attribute parsing shared by the op translations (mx2onnx_patches/ops_common.py): MXNet's
string forms, MXNet's defaults for omitted attributes, and no ``eval`` of model text."""
from __future__ import annotations

import pytest

import mx2onnx_patches  # noqa: F401  (numpy aliases before MXNet)
from common.errors import ConversionFailure
from mx2onnx_patches.ops_common import Emitter


def _emitter(**attrs: str) -> Emitter:
    node = {"name": "n", "op": "Test", "inputs": [], "attrs": attrs}
    return Emitter(node, {"outputs_lookup": [], "initializer": [], "opset_version": 13})


def test_tuple_forms_mxnet_writes():
    e = _emitter(a="(2, 3)", b="[1,2]", c="4", d="(2L, 3L)", e="()", f="(None, 2)")
    assert e.attr_tuple("a") == (2, 3)
    assert e.attr_tuple("b") == (1, 2)
    assert e.attr_tuple("c") == (4,)
    assert e.attr_tuple("d") == (2, 3)
    assert e.attr_tuple("e", (9,)) == ()
    assert e.attr_tuple("f") == (None, 2)


def test_omitted_and_none_attributes_take_the_given_default():
    e = _emitter(layout="None", flag="1", off="False")
    assert e.attr_str("layout", "NCHW") == "NCHW"
    assert e.attr_bool("missing", True) is True
    assert e.attr_bool("flag", False) is True
    assert e.attr_bool("off", True) is False
    assert e.attr_int("missing", 7) == 7


@pytest.mark.parametrize("text", ["__import__('os').getpid()", "(1, 2) + (3,)", "[x for x in ()]"])
def test_expressions_are_refused_not_evaluated(text):
    with pytest.raises(ConversionFailure, match="cannot be parsed"):
        _emitter(shape=text).attr_tuple("shape")
