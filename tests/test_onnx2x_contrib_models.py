"""Real producers of com.microsoft graphs converted with default flags and compared with onnxruntime.

onnxruntime's transformer optimizer on BERT, GPT-2 with past and ViT (small transformers configs,
seeded random weights, TorchScript export), the HF corpus's Llama-family decoders as onnxruntime
saves them after its extended optimizations, and a grouped-query-attention decoder in the form
onnxruntime-genai's model builder writes, run for a prompt and one decoding step on its KV cache.
Each test first checks that the producer really emitted the fused contrib ops.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.support.contrib_cases import check_with_ort, ort_run, run_artifact
from tests.support.contrib_models import (DecoderSpec, bert_feeds, bert_optimized, decoder_feeds, gpt2_feeds,
                                          gpt2_past_optimized, gqa_decoder, op_types, ort_saved_optimized, vit_feeds,
                                          vit_optimized)

MS = "com.microsoft"


def _check_file(path, feeds: dict, tmp_path, expected_ops: set, **tolerance) -> None:
    model = onnx.load(str(path))
    missing = expected_ops - op_types(model)
    assert not missing, f"optimize_model did not emit {sorted(missing)}; it emitted {sorted(op_types(model))}"
    check_with_ort(model, feeds, tmp_path, **tolerance)


def test_bert_optimized(tmp_path) -> None:
    """Default fusion: EmbedLayerNormalization's mask index (key lengths) feeds Attention."""
    path = bert_optimized(tmp_path)
    _check_file(path, bert_feeds(), tmp_path, {f"{MS}:Attention", f"{MS}:EmbedLayerNormalization",
                                               f"{MS}:SkipLayerNormalization", f"{MS}:BiasGelu"}, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant,ops", [
    ({"raw_mask": True, "gelu_approximation": True}, {"Attention", "FastGelu"}),
    ({"multi_head_attention": True}, {"MultiHeadAttention"}),
])
def test_bert_optimized_variants(variant: dict, ops: set, tmp_path) -> None:
    path = bert_optimized(tmp_path, seed=1, **variant)
    _check_file(path, bert_feeds(1), tmp_path, {f"{MS}:{op}" for op in ops}, atol=2e-5)


def test_gpt2_with_past_optimized(tmp_path) -> None:
    """Attention with past/present and unidirectional mask, EmbedLayerNormalization with
    position ids, SkipLayerNormalization's sum output, FastGelu; logits and presents compared."""
    path = gpt2_past_optimized(tmp_path)
    _check_file(path, gpt2_feeds(), tmp_path, {f"{MS}:Attention", f"{MS}:EmbedLayerNormalization",
                                               f"{MS}:SkipLayerNormalization", f"{MS}:FastGelu"}, atol=2e-5)


def test_vit_optimized(tmp_path) -> None:
    path = vit_optimized(tmp_path)
    _check_file(path, vit_feeds(), tmp_path, {f"{MS}:Attention", f"{MS}:SkipLayerNormalization",
                                              f"{MS}:BiasGelu", "LayerNormalization"}, atol=2e-5)


@pytest.mark.parametrize("family", ["mistral", pytest.param("gemma", marks=pytest.mark.slow)])
def test_decoder_as_onnxruntime_saves_it_after_extended_optimizations(family: str, tmp_path) -> None:
    """Llama-family decoders: onnxruntime writes SiLU as QuickGelu and the attention scores as
    FusedMatMul(transB=1), whose operands past the first contrib op have no rank onnx can infer."""
    import torch

    from tests.support import hf_corpus as hc

    src = hc.export(family, tmp_path / f"{family}.onnx", 17)
    model = ort_saved_optimized(src, tmp_path / f"{family}_extended.onnx")
    assert f"{MS}:FusedMatMul" in op_types(model)
    for batch, length, pad in ((2, 16, 0), (3, 11, 2)):
        inputs = hc.sample(family, batch, length, torch.Generator().manual_seed(length), pad=pad)
        feeds = {name: t.numpy() for name, t in zip(hc.input_names(family), inputs)}
        check_with_ort(model, feeds, tmp_path, atol=2e-5)


@pytest.mark.parametrize("packed_rotary_in_gqa", [True, False])
def test_gqa_decoder_prompt_then_decode_step(packed_rotary_in_gqa: bool, tmp_path) -> None:
    """Prompt of 6 tokens, then one token on the returned KV cache: logits and presents of both
    steps match onnxruntime, and the converted module's own cache drives the second step."""
    spec = DecoderSpec()
    model = gqa_decoder(spec, packed_rotary_in_gqa=packed_rotary_in_gqa)
    rng = np.random.default_rng(0)
    with_pos = not packed_rotary_in_gqa
    prompt = decoder_feeds(spec, rng.integers(0, spec.vocab, (2, 6)), None, 0, with_pos)
    got = check_with_ort(model, prompt, tmp_path, atol=2e-5)
    names = [o.name for o in model.graph.output]
    ours = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], got[1:])}
    step = decoder_feeds(spec, rng.integers(0, spec.vocab, (2, 1)), ours, 6, with_pos)
    expected = ort_run(model, step)
    step_got = run_artifact(model, step, tmp_path)
    for e, g in zip(expected, step_got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=2e-5)


@pytest.mark.slow
def test_gqa_decoder_local_window_longer_generation(tmp_path) -> None:
    """A sliding window shorter than the sequence, five decoding steps on the module's own cache."""
    spec = DecoderSpec(window=4, layers=1)
    model = gqa_decoder(spec, packed_rotary_in_gqa=True, seed=3)
    rng = np.random.default_rng(3)
    feeds = decoder_feeds(spec, rng.integers(0, spec.vocab, (1, 5)), None, 0, False)
    ort_past = our_past = None
    length = 0
    for step in range(6):
        ids = feeds["input_ids"] if step == 0 else rng.integers(0, spec.vocab, (1, 1))
        ort_feeds = decoder_feeds(spec, ids, ort_past, length, False)
        our_feeds = decoder_feeds(spec, ids, our_past, length, False)
        expected = ort_run(model, ort_feeds)
        got = run_artifact(model, our_feeds, tmp_path)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=5e-5)
        names = [o.name.replace("present", "past_key_values") for o in model.graph.output[1:]]
        ort_past, our_past = dict(zip(names, expected[1:])), dict(zip(names, got[1:]))
        length += ids.shape[1]
