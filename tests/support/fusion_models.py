"""Plain (unoptimized) transformers graphs as ``torch.onnx.export`` writes them, for the fusion checks.

BERT, GPT-2 and Llama from small configs (seeded random weights, eager attention), exported by the
TorchScript exporter at opset 14: LayerNorm decomposed (no LayerNormalization before opset 17),
GELU as Erf (BERT) or Tanh (GPT-2) arithmetic, attention as MatMul/Mul/Add/Softmax/MatMul, linear
layers as MatMul+Add (BERT) or Gemm (GPT-2's Conv1D). transformers 5 needs the wrapper module:
its models return output objects the exporter cannot flatten.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tests.support.contrib_models import _export, _randomize, import_transformers


def export_plain(kind: str, path: Path, *, hidden: int = 32, heads: int = 4, layers: int = 2, batch: int = 2,
                 seq: int = 8, seed: int = 0, attention: str = "eager") -> Path:
    """``kind``: "bert", "gpt2" or "llama". Inputs ``ids`` and ``mask`` [batch, seq] (dynamic), output ``y``.

    ``attention="sdpa"``: transformers calls ``F.scaled_dot_product_attention``, which the exporter
    writes with the scale on Q and K^T and a NaN guard after the Softmax."""
    tf = import_transformers()
    if kind == "bert":
        cfg = tf.BertConfig(vocab_size=64, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * hidden, max_position_embeddings=max(32, seq))
        cfg._attn_implementation = attention
        model = tf.BertModel(cfg).eval()
    elif kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=64, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max(32, seq),
                            bos_token_id=0, eos_token_id=0)
        cfg._attn_implementation = attention
        model = tf.GPT2Model(cfg).eval()
    elif kind == "llama":  # RMSNorm, rotary embeddings, grouped-query attention, no biases
        cfg = tf.LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                             max_position_embeddings=max(32, seq))
        cfg._attn_implementation = attention
        model = tf.LlamaModel(cfg).eval()
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    _randomize(model, seed)

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state

    ids = torch.zeros(batch, seq, dtype=torch.int64)
    _export(Wrapped().eval(), (ids, torch.ones_like(ids)), path, ["ids", "mask"], ["y"],
            {n: {0: "batch", 1: "seq"} for n in ("ids", "mask")})
    return path
