"""Attention family (onnx2x/torch/ops/attention.py) beyond the node conformance cases.

Reference: onnx's reference evaluator (onnxruntime lacks most of these ops or opsets). Covers
shapes the conformance cases do not: longer sequences, more queries than keys with a causal
mask (the fused-kernel path must keep ONNX's top-left mask), GQA in 3-D form with a KV cache and
every qk_matmul_output mode; and that converted attention models export with torch.export.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from onnx2x.torch import convert
from tests.support.onnx_cases import check_converted, node_model

RNG = np.random.default_rng(0)


def _model(inputs: dict, outputs: list, attrs: dict, opset: int, op: str = "Attention") -> onnx.ModelProto:
    return node_model(op, inputs, outputs, attrs, opset=opset, ir_version=10, infer_output_types=False)


def check(inputs: dict, outputs: list, attrs: dict, opset: int = 23, op: str = "Attention") -> None:
    check_converted(_model(inputs, outputs, attrs, opset, op), inputs, reference="onnx", rtol=1e-4, atol=1e-5)


def rand(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("q_len,kv_len", [(16, 40), (9, 3), (1, 1)])
@pytest.mark.parametrize("causal", [0, 1])
def test_4d_plain_and_causal(q_len: int, kv_len: int, causal: int) -> None:
    check({"Q": rand(2, 4, q_len, 16), "K": rand(2, 2, kv_len, 16), "V": rand(2, 2, kv_len, 8)},
          ["Y"], {"is_causal": causal})


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_3d_gqa_with_cache_and_qk_output(mode: int) -> None:
    inputs = {"Q": rand(2, 5, 6 * 4), "K": rand(2, 5, 2 * 4), "V": rand(2, 5, 2 * 3),
              "attn_mask": (RNG.random((5, 12)) > 0.3), "past_key": rand(2, 2, 7, 4), "past_value": rand(2, 2, 7, 3)}
    check(inputs, ["Y", "present_key", "present_value", "qk"],
          {"q_num_heads": 6, "kv_num_heads": 2, "is_causal": 1, "qk_matmul_output_mode": mode, "softcap": 3.0})


def test_float_mask_shorter_than_kv_is_padded() -> None:
    check({"Q": rand(1, 2, 4, 8), "K": rand(1, 2, 6, 8), "V": rand(1, 2, 6, 8), "attn_mask": rand(4, 3)},
          ["Y"], {"scale": 0.3})


def test_nonpad_kv_seqlen_with_causal_offset() -> None:
    inputs = {"Q": rand(3, 2, 2, 8), "K": rand(3, 2, 7, 8), "V": rand(3, 2, 7, 8), "attn_mask": None,
              "past_key": None, "past_value": None, "nonpad_kv_seqlen": np.array([7, 3, 1], np.int64)}
    check(inputs, ["Y"], {"is_causal": 1}, opset=24)


def test_rotary_embedding_partial_interleaved_3d() -> None:
    pos = RNG.integers(0, 20, (2, 5)).astype(np.int64)
    check({"x": rand(2, 5, 3 * 8), "cos": rand(20, 3), "sin": rand(20, 3), "pos": pos}, ["y"],
          {"interleaved": 1, "rotary_embedding_dim": 6, "num_heads": 3}, op="RotaryEmbedding")


def test_attention_exports_with_torch_export() -> None:
    feeds = {"Q": rand(1, 4, 8, 16), "K": rand(1, 2, 8, 16), "V": rand(1, 2, 8, 16), "attn_mask": rand(8, 8)}
    model = _model(feeds, ["Y"], {"is_causal": 1, "softcap": 5.0}, 23)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    exported = torch.export.export(convert(model, simplify=False), args)
    with torch.no_grad():
        got = exported.module()(*args)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
