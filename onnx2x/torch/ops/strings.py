"""String ops (StringNormalizer, StringConcat, StringSplit, RegexFullMatch, com.microsoft Tokenizer)
and ai.onnx.ml LabelEncoder and CategoryMapper. String values are numpy object arrays at run time
(see ``runtime/strings.py``)."""
from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np
import torch

from common.ir import onnx_ir as ir

from ..builder import NodeContext
from ..dtypes import torch_dtype_of_numpy
from ..registry import converter
from ..runtime import strings as rt


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


@converter("StringNormalizer", since=10)
def string_normalizer(ctx: NodeContext) -> Any:
    stopwords = tuple(_text(w) for w in ctx.attr("stopwords", []))
    return ctx.call(rt.string_normalizer, ctx.input(0), str(ctx.attr("case_change_action", "NONE")),
                    int(ctx.attr("is_case_sensitive", 0)), stopwords)


@converter("StringConcat", since=20)
def string_concat(ctx: NodeContext) -> Any:
    return ctx.call(rt.string_concat, ctx.input(0), ctx.input(1))


@converter("StringSplit", since=20)
def string_split(ctx: NodeContext) -> Any:
    delimiter = ctx.attr("delimiter", None)
    maxsplit = ctx.attr("maxsplit", None)
    res = ctx.call(rt.string_split, ctx.input(0), None if delimiter is None else _text(delimiter),
                   None if maxsplit is None else int(maxsplit))
    return ctx.getitem(res, 0), ctx.getitem(res, 1)


@converter("RegexFullMatch", since=20)
def regex_full_match(ctx: NodeContext) -> Any:
    return ctx.call(rt.regex_full_match, ctx.input(0), _text(ctx.attr("pattern")))


@converter("Tokenizer", since=1, domain="com.microsoft")
def tokenizer(ctx: NodeContext) -> Any:
    """onnxruntime's Tokenizer (what skl2onnx writes for CountVectorizer / TfidfVectorizer):
    ``runtime/strings.tokenize``; the patterns are checked here, at conversion."""
    mincharnum = int(ctx.attr("mincharnum"))
    if mincharnum < 1:
        raise ctx.fail(f"mincharnum must be positive, not {mincharnum}")
    separators = [_text(v) for v in ctx.attr("separators")] if ctx.has_attr("separators") else None
    expression = _text(ctx.attr("tokenexp")) if separators is None and ctx.has_attr("tokenexp") else None
    if separators is None and not expression:
        raise ctx.fail("Tokenizer needs separators or a non-empty tokenexp")
    if separators is not None and not separators:
        raise ctx.fail("separators must not be empty")
    patterns = separators if separators is not None else [expression]
    for pattern in [p for p in patterns if p]:
        try:
            re.compile(pattern, re.ASCII)
        except re.error as exc:
            raise ctx.unsupported(f"pattern {pattern!r}, which Python's re cannot read ({exc})") from exc
    if ((separators == [""] or expression == ".") and mincharnum > 1):
        raise ctx.fail("mincharnum above 1 with character tokenization")
    if ctx.node.outputs[0].dtype is None:  # no inference for this contrib op: later nodes must know
        ctx.node.outputs[0].dtype = ir.DataType.STRING
    return ctx.call(rt.tokenize, ctx.input(0), None if separators is None else tuple(separators), expression,
                    mincharnum, bool(int(ctx.attr("mark"))), _text(ctx.attr("pad_value")))


# --- LabelEncoder ------------------------------------------------------------------------------
def _tensor_items(arr: np.ndarray) -> tuple[tuple, Optional[torch.dtype]]:
    """Python values of a tensor attribute and their torch dtype (None for strings)."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind in "SU":
        return tuple(_text(v) for v in arr.reshape(-1)), None
    return tuple(arr.reshape(-1).tolist()), torch_dtype_of_numpy(arr.dtype)


def _keys_values(ctx: NodeContext) -> tuple[tuple, tuple, Optional[torch.dtype], str]:
    """(keys, values, output dtype or None for strings, value kind: 'string' | 'int' | 'float')."""
    if ctx.opset < 2:
        classes = tuple(_text(c) for c in ctx.attr("classes_strings", []))
        if ctx.dtype(0) is None:  # strings -> their index
            return classes, tuple(range(len(classes))), torch.int64, "int"
        return tuple(range(len(classes))), classes, None, "string"
    keys: Optional[tuple] = None
    for name, conv in (("keys_strings", _text), ("keys_int64s", int), ("keys_floats", float)):
        if ctx.has_attr(name):
            keys = tuple(conv(k) for k in ctx.attr(name))
    if keys is None and ctx.has_attr("keys_tensor"):
        keys, _ = _tensor_items(ctx.attr("keys_tensor"))
    for name, conv, dtype, kind in (("values_strings", _text, None, "string"),
                                    ("values_int64s", int, torch.int64, "int"),
                                    ("values_floats", float, torch.float32, "float")):
        if ctx.has_attr(name):
            return keys or (), tuple(conv(v) for v in ctx.attr(name)), dtype, kind
    if ctx.has_attr("values_tensor"):
        values, dtype = _tensor_items(ctx.attr("values_tensor"))
        kind = "string" if dtype is None else ("float" if dtype.is_floating_point else "int")
        return keys or (), values, dtype, kind
    raise ctx.fail("LabelEncoder has no values attribute")


@converter("LabelEncoder", since=1, domain="ai.onnx.ml")
def label_encoder(ctx: NodeContext) -> Any:
    keys, values, dtype, kind = _keys_values(ctx)
    if ctx.has_attr("default_tensor"):
        default, _ = _tensor_items(ctx.attr("default_tensor"))
        default = default[0]
    elif kind == "string":
        default = _text(ctx.attr("default_string", "_Unused"))
    elif kind == "int":
        default = int(ctx.attr("default_int64", -1))
    else:
        default = float(ctx.attr("default_float", -0.0))
    return ctx.call(rt.label_encode, ctx.input(0), keys, values, default, dtype)


@converter("CategoryMapper", since=1, domain="ai.onnx.ml")
def category_mapper(ctx: NodeContext) -> Any:
    """Strings to their int64 category, or int64 categories to their string (the later of equal
    keys wins, as in onnxruntime); the input's type picks the direction."""
    strings = tuple(_text(v) for v in ctx.attr("cats_strings", []))
    ints = tuple(int(v) for v in ctx.attr("cats_int64s", []))
    if len(strings) != len(ints):
        raise ctx.fail(f"cats_strings has {len(strings)} entries, cats_int64s {len(ints)}")
    if ctx.is_string(0):
        return ctx.call(rt.label_encode, ctx.input(0), strings, ints, int(ctx.attr("default_int64", -1)), torch.int64)
    return ctx.call(rt.label_encode, ctx.input(0), ints, strings, _text(ctx.attr("default_string", "_Unused")), None)
