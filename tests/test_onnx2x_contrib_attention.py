"""onnxruntime's attention ops (onnx2x/torch/ops/contrib_attention.py) against its CPU kernels.

Attention (BERT/GPT-2: every mask format, past/present, unidirectional, qkv_hidden_sizes, scale,
mask_filter_value, attention_bias), MultiHeadAttention (separate, packed QKV/KV, cross attention
on projected keys, KV cache, key padding masks, qk output), GroupQueryAttention (prompt and
decoding with per-row cache lengths, packed QKV, rotary, local window, softcap, sink softmax,
qk output) and RotaryEmbedding. The 4-D Megatron mask, which onnxruntime computes on GPU only,
is compared with onnxruntime on the equivalent 3-D mask.
"""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import UnsupportedOpError
from onnx2x.torch import convert
from tests.support.contrib_cases import check_with_ort, ms_node_model, rng_arrays, slow_after

rand = rng_arrays(3)
B, S, HID, N = 2, 5, 16, 4


def _attention_feeds(mask=None, past=None, attention_bias=None, seq: int = S, v_hidden: int = HID):
    return {"input": rand(B, seq, HID), "weights": rand(HID, 2 * HID + v_hidden, scale=0.5),
            "bias": rand(2 * HID + v_hidden), "mask_index": mask, "past": past, "attention_bias": attention_bias}


_MASKS = {
    "none": None,
    "key_lengths": np.array([3, 5], np.int32),
    "end_start": np.array([5, 4, 1, 0], np.int32),
    "raw_2d": np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], np.int32),
    "raw_3d": (np.arange(B * S * S).reshape(B, S, S) % 3 != 1).astype(np.int32),
    "all_masked_row": np.array([[0, 0, 0, 0, 0], [1, 1, 0, 1, 1]], np.int32),
}


@pytest.mark.parametrize("mask", slow_after(3, ["end_start", "raw_3d", "all_masked_row", "none", "key_lengths",
                                                "raw_2d"]))
def test_attention_bert_masks(mask: str, tmp_path) -> None:
    feeds = _attention_feeds(_MASKS[mask])
    model = ms_node_model("Attention", feeds, ["y"], {"num_heads": N}, consts=["weights", "bias"])
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.parametrize("attrs", slow_after(1, [{"unidirectional": 1, "scale": 0.3}, {"mask_filter_value": -50.0}]))
def test_attention_attributes(attrs: dict, tmp_path) -> None:
    """With unidirectional, the first row (fully padded) still attends causally."""
    feeds = _attention_feeds(_MASKS["all_masked_row"])
    model = ms_node_model("Attention", feeds, ["y"], dict(attrs, num_heads=N), consts=["weights", "bias"])
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.parametrize("seq", slow_after(1, [3, 1]))
def test_attention_gpt2_past_present_unidirectional(seq: int, tmp_path) -> None:
    """GPT-2 with a KV cache: past [2, B, N, P, H] in, present [2, B, N, P+S, H] out, raw 2-D mask
    over all P+S positions."""
    past_len = 4
    mask = np.ones((B, past_len + seq), np.int32)
    mask[1, :2] = 0  # left padding of the second row
    feeds = _attention_feeds(mask, past=rand(2, B, N, past_len, HID // N), seq=seq)
    model = ms_node_model("Attention", feeds, ["y", "present"], {"num_heads": N, "unidirectional": 1},
                          consts=["weights", "bias"])
    check_with_ort(model, feeds, tmp_path)


def test_attention_different_v_width_and_bias(tmp_path) -> None:
    feeds = _attention_feeds(_MASKS["key_lengths"], attention_bias=rand(1, N, S, S), v_hidden=8)
    model = ms_node_model("Attention", feeds, ["y"], {"num_heads": N, "qkv_hidden_sizes": [HID, HID, 8]},
                          consts=["weights", "bias"])
    check_with_ort(model, feeds, tmp_path)


def test_attention_megatron_4d_mask_matches_3d_slice(tmp_path) -> None:
    """A [B, 1, M, M] mask is read at rows P..P+S-1, columns 0..P+S-1 (onnxruntime's GPU kernel)."""
    past_len, seq, max_len = 2, 3, 8
    mask4 = (rand.rng.random((B, 1, max_len, max_len)) > 0.3).astype(np.int32)
    mask4[:, :, :, 0] = 1
    feeds = _attention_feeds(mask4, past=rand(2, B, N, past_len, HID // N), seq=seq)
    model = ms_node_model("Attention", feeds, ["y", "present"], {"num_heads": N}, consts=["weights", "bias"])
    ref_feeds = dict(feeds, mask_index=np.ascontiguousarray(mask4[:, 0, past_len:past_len + seq, :past_len + seq]))
    reference = ms_node_model("Attention", ref_feeds, ["y", "present"], {"num_heads": N}, consts=["weights", "bias"])
    check_with_ort(model, feeds, tmp_path, reference=reference, reference_feeds=ref_feeds)


@pytest.mark.parametrize("attrs,match", [({"do_rotary": 1}, "do_rotary"),
                                         ({"past_present_share_buffer": 1}, "past_present_share_buffer")])
def test_attention_refuses_unimplemented_attributes(attrs: dict, match: str) -> None:
    feeds = _attention_feeds()
    with pytest.raises(UnsupportedOpError, match=match):
        convert(ms_node_model("Attention", feeds, ["y"], dict(attrs, num_heads=N)), simplify=False)


def test_attention_refuses_packed_mask_format() -> None:
    feeds = _attention_feeds(np.zeros(3 * B + 2, np.int32))
    with pytest.raises(UnsupportedOpError, match="mask of shape"):
        convert(ms_node_model("Attention", feeds, ["y"], {"num_heads": N}), simplify=False)


# --- MultiHeadAttention ---------------------------------------------------------------------------
H = HID // N


def _mha(feeds: dict, outputs, tmp_path, **attrs) -> None:
    model = ms_node_model("MultiHeadAttention", feeds, outputs, dict(attrs, num_heads=N),
                          output_types={"qk": np.float32})
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.parametrize("kv_len,mask", slow_after(2, [(7, "raw_3d"), (5, "lengths"), (7, None), (5, "raw_2d"),
                                                       (5, None), (7, "lengths")]))
def test_mha_separate_qkv_with_bias_and_masks(kv_len: int, mask, tmp_path) -> None:
    masks = {None: None, "lengths": np.array([kv_len - 2, kv_len], np.int32),
             "raw_2d": (rand.rng.random((B, kv_len)) > 0.3).astype(np.int32),
             "raw_3d": (rand.rng.random((B, S, kv_len)) > 0.3).astype(np.int32)}
    feeds = {"query": rand(B, S, HID), "key": rand(B, kv_len, HID), "value": rand(B, kv_len, HID),
             "bias": rand(3 * HID), "key_padding_mask": masks[mask]}
    _mha(feeds, ["y"], tmp_path)


def test_mha_self_attention_kv_cache_causal_with_bias_and_qk(tmp_path) -> None:
    past_len, seq = 4, 3
    feeds = {"query": rand(B, seq, HID), "key": rand(B, seq, HID), "value": rand(B, seq, HID), "bias": rand(3 * HID),
             "key_padding_mask": None, "attention_bias": rand(B, 1, seq, past_len + seq),
             "past_key": rand(B, N, past_len, H), "past_value": rand(B, N, past_len, H)}
    _mha(feeds, ["y", "present_key", "present_value", "qk"], tmp_path, unidirectional=1, scale=0.4)


def _unpacked(packed: np.ndarray, k: int) -> np.ndarray:
    """[B, L, N, n, H] -> the k-th of the n packed tensors as [B, L, N*H]."""
    b, length = packed.shape[:2]
    return np.ascontiguousarray(packed[:, :, :, k].reshape(b, length, -1))


def test_mha_packed_qkv(tmp_path) -> None:
    """Packed QKV [B, S, N, 3, H] (GPU-only in onnxruntime) against the same op unpacked."""
    feeds = {"query": rand(B, S, N, 3, H), "key": None, "value": None, "bias": rand(3 * HID)}
    ref_feeds = {"query": _unpacked(feeds["query"], 0), "key": _unpacked(feeds["query"], 1),
                 "value": _unpacked(feeds["query"], 2), "bias": feeds["bias"]}
    reference = ms_node_model("MultiHeadAttention", ref_feeds, ["y"], {"num_heads": N})
    check_with_ort(ms_node_model("MultiHeadAttention", feeds, ["y"], {"num_heads": N}), feeds, tmp_path,
                   reference=reference, reference_feeds=ref_feeds)


@pytest.mark.slow
def test_mha_packed_kv(tmp_path) -> None:
    """Packed KV [B, L, N, 2, H] (GPU-only in onnxruntime) against the same op unpacked."""
    feeds = {"query": rand(B, S, HID), "key": rand(B, 6, N, 2, H), "value": None, "bias": rand(3 * HID)}
    ref_feeds = {"query": feeds["query"], "key": _unpacked(feeds["key"], 0), "value": _unpacked(feeds["key"], 1),
                 "bias": feeds["bias"]}
    reference = ms_node_model("MultiHeadAttention", ref_feeds, ["y"], {"num_heads": N})
    check_with_ort(ms_node_model("MultiHeadAttention", feeds, ["y"], {"num_heads": N}), feeds, tmp_path,
                   reference=reference, reference_feeds=ref_feeds)


def test_mha_cross_attention_on_projected_keys(tmp_path) -> None:
    """Whisper-style decoders feed the encoder's projected keys/values as [B, N, L, H]."""
    feeds = {"query": rand(B, 1, HID), "key": rand(B, N, 6, H), "value": rand(B, N, 6, H), "bias": None,
             "key_padding_mask": np.array([[1, 1, 1, 1, 0, 0], [1] * 6], np.int32)}
    _mha(feeds, ["y"], tmp_path)


@pytest.mark.parametrize("with_mask_bias_qk", slow_after(1, [True, False]))
def test_decoder_masked_mha_shared_buffer(with_mask_bias_qk: bool, tmp_path) -> None:
    """One token written at past_sequence_length into the [B, N, M, H] buffers; the rest of the
    buffer passes through to present_key/present_value."""
    max_len, past_len = 7, 3
    feeds = {"query": rand(B, 1, HID), "key": rand(B, 1, HID), "value": rand(B, 1, HID),
             "mask_index": np.array([[1, 0, 1, 1], [1, 1, 1, 1]], np.int32) if with_mask_bias_qk else None,
             "attention_bias": rand(1, N, 1, past_len + 1) if with_mask_bias_qk else None,
             "past_key": rand(B, N, max_len, H), "past_value": rand(B, N, max_len, H),
             "past_sequence_length": np.array(past_len, np.int32), "beam_width": None, "cache_indirection": None,
             "bias": rand(3 * HID) if with_mask_bias_qk else None}
    outputs = ["y", "present_key", "present_value"] + (["qk"] if with_mask_bias_qk else [])
    model = ms_node_model("DecoderMaskedMultiHeadAttention", feeds, outputs,
                          {"num_heads": N, "past_present_share_buffer": 1, "output_qk": int(with_mask_bias_qk)},
                          output_types={"qk": np.float32})
    check_with_ort(model, feeds, tmp_path)


def test_decoder_masked_mha_cross_attention(tmp_path) -> None:
    feeds = {"query": rand(B, 1, HID), "key": rand(B, N, 6, H), "value": rand(B, N, 6, H),
             "mask_index": np.array([[1, 1, 1, 1, 1, 0], [1] * 6], np.int32)}
    model = ms_node_model("DecoderMaskedMultiHeadAttention", feeds, ["y"], {"num_heads": N, "scale": 0.5})
    check_with_ort(model, feeds, tmp_path)


# --- GroupQueryAttention ---------------------------------------------------------------------------
NQ, NKV, HD = 4, 2, 16  # onnxruntime's CPU rotary wants head sizes that are multiples of 16


def _gqa_inputs(seq: int, past_len: int, seqlens, packed: bool, rotary: bool, max_pos: int = 32) -> dict:
    feeds: dict = {}
    if packed:
        feeds.update(query=rand(B, seq, (NQ + 2 * NKV) * HD), key=None, value=None)
    else:
        feeds.update(query=rand(B, seq, NQ * HD), key=rand(B, seq, NKV * HD), value=rand(B, seq, NKV * HD))
    feeds.update(past_key=rand(B, NKV, past_len, HD) if past_len else None,
                 past_value=rand(B, NKV, past_len, HD) if past_len else None,
                 seqlens_k=np.asarray(seqlens, np.int32),
                 total_sequence_length=np.array(max(seqlens) + 1, np.int32))
    angles = np.arange(max_pos)[:, None] * (10000.0 ** (-np.arange(HD // 2) / (HD // 2)))[None, :]
    feeds.update(cos_cache=np.cos(angles).astype(np.float32) if rotary else None,
                 sin_cache=np.sin(angles).astype(np.float32) if rotary else None)
    return feeds


def _gqa(feeds: dict, tmp_path, outputs=("y", "present_key", "present_value"), ignore=(), **attrs) -> None:
    model = ms_node_model("GroupQueryAttention", feeds, list(outputs),
                          dict(attrs, num_heads=NQ, kv_num_heads=NKV),
                          consts=[k for k in ("cos_cache", "sin_cache") if feeds.get(k) is not None])
    check_with_ort(model, feeds, tmp_path, ignore=ignore)


@pytest.mark.parametrize("packed,rotary,interleaved", slow_after(1, [
    (True, True, 1), (False, True, 0), (False, False, 0), (True, False, 0),
]))
def test_gqa_prompt(packed: bool, rotary: bool, interleaved: int, tmp_path) -> None:
    feeds = _gqa_inputs(S, 0, [S - 1, S - 1], packed, rotary)
    _gqa(feeds, tmp_path, do_rotary=int(rotary), rotary_interleaved=interleaved)


def test_gqa_prompt_right_padded_rows(tmp_path) -> None:
    """Row 1 holds 3 real tokens: its present cache keeps all S written rows, and the outputs of
    its padded query rows (which onnxruntime leaves unspecified) are not compared."""
    feeds = _gqa_inputs(S, 0, [S - 1, 2], False, True)
    _gqa(feeds, tmp_path, do_rotary=1, ignore=[(0, (1, slice(3, None)))])


@pytest.mark.parametrize("packed,past_len", slow_after(1, [(False, 10), (True, 6)]))
def test_gqa_decoding_with_ragged_cache(packed: bool, past_len: int, tmp_path) -> None:
    """One new token per row after 6 and 4 cached ones; a past buffer longer than the history
    (10) gives a present buffer of that length, zero past each row's end."""
    feeds = _gqa_inputs(1, past_len, [6, 4], packed, True)
    _gqa(feeds, tmp_path, do_rotary=1)


def test_gqa_rotary_with_explicit_position_ids(tmp_path) -> None:
    """Given position_ids replace the positions derived from the cache lengths."""
    feeds = _gqa_inputs(1, 6, [6, 4], True, True)
    feeds["position_ids"] = np.array([[9], [2]], np.int64)
    _gqa(feeds, tmp_path, do_rotary=1, rotary_interleaved=1)


def test_gqa_attention_bias_with_longer_past_buffer(tmp_path) -> None:
    """attention_bias spans total_sequence_length columns while the cache buffer is longer."""
    feeds = _gqa_inputs(1, 9, [6, 4], False, False)
    feeds.update(position_ids=None, attention_bias=rand(B, 1, 1, 7))
    _gqa(feeds, tmp_path)


@pytest.mark.parametrize("attrs", slow_after(2, [{"local_window_size": 3}, {"softcap": 2.0, "scale": 0.2},
                                                {"smooth_softmax": 1}]))
def test_gqa_attention_variants(attrs: dict, tmp_path) -> None:
    feeds = _gqa_inputs(1, 8, [8, 5], False, False)
    _gqa(feeds, tmp_path, **attrs)


@pytest.mark.parametrize("mode", slow_after(1, [2, 1]))
def test_gqa_sink_and_qk_output(mode: int, tmp_path) -> None:
    """qk before (1) or after (2) softmax; row 1 (4 keys) leaves the rest of its qk row unspecified."""
    feeds = _gqa_inputs(1, 6, [6, 3], False, False)
    feeds.update(position_ids=None, attention_bias=None, head_sink=rand(NQ))
    _gqa(feeds, tmp_path, outputs=("y", "present_key", "present_value", "qk"), qk_output=mode,
         ignore=[(3, (1, slice(None), slice(None), slice(4, None)))])


@pytest.mark.slow
def test_gqa_subsequent_prompt_chunk(tmp_path) -> None:
    """A second prompt chunk of 3 tokens after 4 cached ones (batch 1, as onnxruntime requires)."""
    feeds = {"query": rand(1, 3, NQ * HD), "key": rand(1, 3, NKV * HD), "value": rand(1, 3, NKV * HD),
             "past_key": rand(1, NKV, 4, HD), "past_value": rand(1, NKV, 4, HD),
             "seqlens_k": np.array([6], np.int32), "total_sequence_length": np.array(7, np.int32),
             "cos_cache": None, "sin_cache": None}
    _gqa(feeds, tmp_path, local_window_size=4)


def test_gqa_refuses_quantized_cache() -> None:
    feeds = _gqa_inputs(1, 4, [4, 4], False, False)
    with pytest.raises(UnsupportedOpError, match="k_quant_type"):
        convert(ms_node_model("GroupQueryAttention", feeds, ["y"],
                              {"num_heads": NQ, "kv_num_heads": NKV, "k_quant_type": "PER_TENSOR"}), simplify=False)


# --- RotaryEmbedding -------------------------------------------------------------------------------
@pytest.mark.parametrize("interleaved,layout,positions", slow_after(2, [
    (1, "bsd", "start"), (0, "bnsh", "per_token"), (0, "bsd", "per_token"), (1, "bnsh", "start"),
]))
def test_rotary_embedding(interleaved: int, layout: str, positions: str, tmp_path) -> None:
    x = rand(B, S, NQ * HD) if layout == "bsd" else rand(B, NQ, S, HD)
    pos = np.array([3], np.int64) if positions == "start" else rand.rng.integers(0, 20, (B, S)).astype(np.int64)
    feeds = {"x": x, "position_ids": pos, "cos_cache": rand(24, HD // 2), "sin_cache": rand(24, HD // 2)}
    model = ms_node_model("RotaryEmbedding", feeds, ["y"], {"interleaved": interleaved})
    check_with_ort(model, feeds, tmp_path)


@pytest.mark.slow
def test_rotary_embedding_partial_dim(tmp_path) -> None:
    feeds = {"x": rand(B, S, NQ * HD), "position_ids": np.array([0], np.int64),
             "cos_cache": rand(16, 2), "sin_cache": rand(16, 2)}
    model = ms_node_model("RotaryEmbedding", feeds, ["y"], {"num_heads": NQ, "rotary_embedding_dim": 4})
    check_with_ort(model, feeds, tmp_path)


# --- float16 ------------------------------------------------------------------------------------------
def _half(*shape: int, scale: float = 1.0) -> np.ndarray:
    return rand(*shape, scale=scale).astype(np.float16)


_FP16_CASES = {
    "GroupQueryAttention": ({"query": _half(B, 1, NQ * HD), "key": _half(B, 1, NKV * HD),
                             "value": _half(B, 1, NKV * HD),
                             "past_key": _half(B, NKV, 4, HD), "past_value": _half(B, NKV, 4, HD),
                             "seqlens_k": np.array([4, 2], np.int32), "total_sequence_length": np.array(5, np.int32)},
                            ["y", "present_key", "present_value"], {"num_heads": NQ, "kv_num_heads": NKV}),
    "SkipSimplifiedLayerNormalization": ({"x": _half(B, S, HID), "skip": _half(B, S, HID), "gamma": _half(HID)},
                                         ["y", "", "", "sum"], {}),
    "RotaryEmbedding": ({"x": _half(B, S, NQ * HD), "position_ids": np.array([1], np.int64),
                         "cos_cache": _half(16, HD // 2), "sin_cache": _half(16, HD // 2)}, ["y"], {}),
    "Attention": ({"input": _half(B, S, HID), "weights": _half(HID, 3 * HID, scale=0.3), "bias": _half(3 * HID),
                   "mask_index": np.array([3, 5], np.int32)}, ["y"], {"num_heads": N}),
    "MultiHeadAttention": ({"query": _half(B, S, HID), "key": _half(B, S, HID), "value": _half(B, S, HID)},
                           ["y"], {"num_heads": N, "unidirectional": 1}),
}


@pytest.mark.parametrize("op", slow_after(1, list(_FP16_CASES)))
def test_float16(op: str, tmp_path) -> None:
    """float16 models (what LLM builders emit for GPUs) where onnxruntime's CPU kernels take them."""
    feeds, outputs, attrs = _FP16_CASES[op]
    check_with_ort(ms_node_model(op, feeds, outputs, attrs), feeds, tmp_path, rtol=2e-3, atol=2e-3)
