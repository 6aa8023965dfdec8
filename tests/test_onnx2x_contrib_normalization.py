"""onnxruntime's normalization ops (onnx2x/torch/ops/contrib_normalization.py) against onnxruntime.

SkipLayerNormalization, SkipSimplifiedLayerNormalization and EmbedLayerNormalization run on
onnxruntime's CPU kernels, as do LayerNormalization-1 and SimplifiedLayerNormalization-1 (its
contrib schemas in the ONNX domain); GroupNorm and SkipGroupNorm exist on GPU only, so their
reference is onnxruntime running the documented computation in standard ops.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.support.contrib_cases import check_with_ort, graph_model, ms_node_model, rng_arrays, slow_after

rand = rng_arrays(2)
ALL4 = ["y", "mean", "inv_std", "sum"]


@pytest.mark.parametrize("skip_shape,with_beta,with_bias", slow_after(2, [
    ((2, 5, 16), True, True), ((5, 16), False, False), ((1, 5, 16), True, False), ((2, 5, 16), False, False),
    ((1, 5, 16), True, True), ((5, 16), True, True),
]))
def test_skip_layer_norm(skip_shape, with_beta: bool, with_bias: bool, tmp_path) -> None:
    feeds = {"x": rand(2, 5, 16, scale=2.0), "skip": rand(*skip_shape), "gamma": rand(16),
             "beta": rand(16) if with_beta else None, "bias": rand(16) if with_bias else None}
    model = ms_node_model("SkipLayerNormalization", feeds, ALL4, {"epsilon": 1e-5},
                          consts=[k for k in ("gamma", "beta", "bias") if feeds[k] is not None])
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.parametrize("outputs", slow_after(1, [ALL4, ["y"], ["y", "", "", "sum"]]))
def test_skip_simplified_layer_norm(outputs, tmp_path) -> None:
    feeds = {"x": rand(3, 4, 8), "skip": rand(3, 4, 8), "gamma": rand(8), "bias": rand(8)}
    model = ms_node_model("SkipSimplifiedLayerNormalization", feeds, outputs, {"epsilon": 1e-6}, consts=["gamma"])
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.slow
def test_skip_simplified_layer_norm_2d_tokens(tmp_path) -> None:
    feeds = {"x": rand(7, 8), "skip": rand(7, 8), "gamma": rand(8)}
    check_with_ort(ms_node_model("SkipSimplifiedLayerNormalization", feeds, ["y"]), feeds, tmp_path)


@pytest.mark.parametrize("axis", slow_after(1, [1, -1]))
def test_simplified_layer_norm_onnx_domain(axis: int, tmp_path) -> None:
    feeds = {"x": rand(2, 3, 8), "scale": rand(8) if axis == -1 else rand(3, 8)}
    model = ms_node_model("SimplifiedLayerNormalization", feeds, ["y", "inv_std"], {"axis": axis, "epsilon": 1e-5},
                          domain="", opset=14)
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.parametrize("axis", slow_after(1, [1, -1]))
def test_layer_norm_contrib_schema_before_opset_17(axis: int, tmp_path) -> None:
    """What the transformer optimizer writes into an opset-14 model."""
    shape = (8,) if axis == -1 else (3, 8)
    feeds = {"x": rand(2, 3, 8), "scale": rand(*shape), "b": rand(*shape)}
    model = ms_node_model("LayerNormalization", feeds, ["y", "mean", "inv_std"], {"axis": axis, "epsilon": 1e-5},
                          domain="", opset=14)
    check_with_ort(model, feeds, tmp_path)


def _embed_feeds(with_segment: bool, mask, position_ids):
    batch, seq = 2, 5
    rng = rand.rng
    return {
        "input_ids": rng.integers(0, 30, (batch, seq)).astype(np.int32),
        "segment_ids": rng.integers(0, 2, (batch, seq)).astype(np.int32) if with_segment else None,
        "word": rand(30, 16), "position": rand(12, 16), "segment": rand(2, 16) if with_segment else None,
        "gamma": rand(16), "beta": rand(16), "mask": mask, "position_ids": position_ids,
    }


_MASK = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]], np.int32)
_POS_SHARED = np.array([[4, 3, 2, 1, 0]], np.int32)
_POS_PER_ROW = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]], np.int32)


@pytest.mark.parametrize("with_segment,mask,position_ids", slow_after(2, [
    (True, _MASK, None), (False, None, _POS_PER_ROW), (True, None, _POS_SHARED), (False, _MASK, _POS_SHARED),
    (True, _MASK, _POS_PER_ROW), (False, None, None),
]))
def test_embed_layer_norm(with_segment: bool, mask, position_ids, tmp_path) -> None:
    feeds = _embed_feeds(with_segment, mask, position_ids)
    model = ms_node_model("EmbedLayerNormalization", feeds, ["y", "mask_index", "sum"], {"epsilon": 1e-5},
                          consts=[k for k in ("word", "position", "segment", "gamma", "beta") if feeds[k] is not None])
    check_with_ort(model, feeds, tmp_path)


def _group_norm_reference(feeds: dict, groups: int, silu: bool, channels_last: bool, skip: bool, bias: bool):
    """Standard ops: (x + skip + bias) -> NCHW -> GroupNormalization-21 -> (SiLU) -> back."""
    nodes, s = [], "x"
    if skip:
        skip_name = "skip"
        if feeds["skip"].ndim == 2:
            nodes.append(helper.make_node("Unsqueeze", ["skip", "hw_axes"], ["skip4"]))
            skip_name = "skip4"
        nodes.append(helper.make_node("Add", [s, skip_name], ["s1"]))
        s = "s1"
    if bias:
        bias_name = "bias"
        if not channels_last:
            nodes.append(helper.make_node("Unsqueeze", ["bias", "chw_axes"], ["bias3"]))
            bias_name = "bias3"
        nodes.append(helper.make_node("Add", [s, bias_name], ["s2"]))
        s = "s2"
    sum_name = s
    if channels_last:
        nodes.append(helper.make_node("Transpose", [s], ["nchw"], perm=[0, 3, 1, 2]))
        s = "nchw"
    nodes.append(helper.make_node("GroupNormalization", [s, "gamma", "beta"], ["gn"], num_groups=groups, epsilon=1e-5))
    s = "gn"
    if silu:
        nodes += [helper.make_node("Sigmoid", [s], ["sig"]), helper.make_node("Mul", [s, "sig"], ["act"])]
        s = "act"
    nodes.append(helper.make_node("Transpose", [s], ["y"], perm=[0, 2, 3, 1]) if channels_last
                 else helper.make_node("Identity", [s], ["y"]))
    outputs = ["y"]
    if skip:
        nodes.append(helper.make_node("Identity", [sum_name], ["sum"]))
        outputs.append("sum")
    consts = {"hw_axes": np.array([1, 2] if channels_last else [2, 3], np.int64),
              "chw_axes": np.array([1, 2], np.int64)}
    return graph_model(nodes, {k: v for k, v in feeds.items() if v is not None}, outputs, consts, opset=21)


@pytest.mark.parametrize("channels_last,silu", slow_after(1, [(1, 1), (0, 0), (0, 1), (1, 0)]))
def test_group_norm(channels_last: int, silu: int, tmp_path) -> None:
    x = rand(2, 4, 5, 8) if channels_last else rand(2, 8, 4, 5)
    feeds = {"x": x, "gamma": rand(8), "beta": rand(8)}
    model = ms_node_model("GroupNorm", feeds, ["y"], {"groups": 4, "activation": silu, "epsilon": 1e-5,
                                                     "channels_last": channels_last})
    ref = _group_norm_reference(feeds, 4, bool(silu), bool(channels_last), False, False)
    check_with_ort(model, feeds, tmp_path, reference=ref)


@pytest.mark.parametrize("skip_shape,bias", slow_after(1, [((2, 8), True), ((2, 4, 5, 8), True),
                                                         ((2, 1, 1, 8), False)]))
def test_skip_group_norm(skip_shape, bias: bool, tmp_path) -> None:
    feeds = {"x": rand(2, 4, 5, 8), "gamma": rand(8), "beta": rand(8), "skip": rand(*skip_shape),
             "bias": rand(8) if bias else None}
    model = ms_node_model("SkipGroupNorm", feeds, ["y", "sum"], {"groups": 2, "activation": 1, "epsilon": 1e-5})
    ref = _group_norm_reference(feeds, 2, True, True, True, bias)
    check_with_ort(model, feeds, tmp_path, reference=ref)
