"""Transformer encoders as users export them: transformers configs (seeded random weights), a
dynamic batch and sequence length, ``torch.onnx.export`` with the TorchScript exporter or dynamo.

Every family here slices its position-ids buffer to the run-time sequence length, the pattern
that used to stop ``onnx2x torch`` ("getitem failed on constant inputs").
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .contrib_models import _randomize, import_transformers

HIDDEN, HEADS, LAYERS, VOCAB = 64, 4, 2, 500


def encoder(family: str) -> torch.nn.Module:
    """A small eager-attention encoder of ``family`` (bert, distilbert, albert, electra), eval mode."""
    transformers = import_transformers()
    common = dict(vocab_size=VOCAB, attn_implementation="eager")
    config = {
        "bert": lambda: transformers.BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                                num_attention_heads=HEADS, intermediate_size=2 * HIDDEN, **common),
        "distilbert": lambda: transformers.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                                                            hidden_dim=2 * HIDDEN, **common),
        "albert": lambda: transformers.AlbertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, embedding_size=32,
                                                    num_attention_heads=HEADS, intermediate_size=2 * HIDDEN, **common),
        "electra": lambda: transformers.ElectraConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, embedding_size=32,
                                                      num_attention_heads=HEADS, intermediate_size=2 * HIDDEN, **common),
    }[family]()
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    _randomize(model, seed=1, std=0.05)
    return _LastHiddenState(model).eval()


class _LastHiddenState(torch.nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state``: the positional signature
    ``torch.onnx.export`` needs (transformers 5 models take keyword arguments)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export(module: torch.nn.Module, path: Path, *, opset: int, dynamo: bool = False) -> Path:
    """Export with a dynamic batch and sequence length, as the transformers docs show."""
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=opset, dynamo=dynamo,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
    return path
