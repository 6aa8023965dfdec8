"""Transformers as users export them: transformers configs (seeded random weights at a realistic
scale), dynamic axes, ``torch.onnx.export`` with the TorchScript exporter or dynamo.

Text families (BERT, DistilBERT, ALBERT, ELECTRA, RoBERTa, GPT-2, T5 encoder, full T5 and
FLAN-T5) take ``input_ids`` and ``attention_mask`` (plus ``decoder_input_ids`` for the full T5s) with a dynamic batch
and sequence length. Most slice a position-ids buffer to the run-time sequence length, the pattern
that used to stop ``onnx2x torch`` ("getitem failed on constant inputs"); RoBERTa derives its
positions from a CumSum over the non-padding tokens, T5 computes relative position buckets.
Vision families (ViT, MobileViT, MobileViTV2) take ``pixel_values`` with a dynamic batch only.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .contrib_models import _randomize, import_transformers

HIDDEN, HEADS, LAYERS, VOCAB = 64, 4, 2, 500
IMAGE = {"vit": 32, "mobilevit": 64, "mobilevitv2": 64}  # ViT: 16 patches of 8 + CLS; MobileViT: 2x2 last map

TEXT = ("bert", "distilbert", "albert", "electra", "roberta", "gpt2", "t5_encoder", "t5", "flan_t5")
VISION = ("vit", "mobilevit", "mobilevitv2")
SEQ2SEQ = ("t5", "flan_t5")


def _config(family: str):
    transformers = import_transformers()
    common = dict(vocab_size=VOCAB, attn_implementation="eager")
    bert_like = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=2 * HIDDEN)
    t5 = dict(d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=2 * HIDDEN, num_layers=LAYERS, num_heads=HEADS,
              relative_attention_num_buckets=8, relative_attention_max_distance=16, **common)
    return {
        "bert": lambda: transformers.BertConfig(**bert_like, **common),
        "distilbert": lambda: transformers.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                                                            hidden_dim=2 * HIDDEN, **common),
        "albert": lambda: transformers.AlbertConfig(embedding_size=32, **bert_like, **common),
        "electra": lambda: transformers.ElectraConfig(embedding_size=32, **bert_like, **common),
        "roberta": lambda: transformers.RobertaConfig(**bert_like, **common),
        "gpt2": lambda: transformers.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64,
                                                bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, use_cache=False,
                                                **common),
        "t5_encoder": lambda: transformers.T5Config(use_cache=False, **t5),
        "t5": lambda: transformers.T5Config(use_cache=False, **t5),
        # T5 v1.1 / FLAN-T5: gated GELU (tanh approximation) feed-forward, untied embeddings
        "flan_t5": lambda: transformers.T5Config(use_cache=False, feed_forward_proj="gated-gelu",
                                                 tie_word_embeddings=False, **t5),
        "vit": lambda: transformers.ViTConfig(image_size=IMAGE["vit"], patch_size=8, **bert_like,
                                              attn_implementation="eager"),
        "mobilevit": lambda: transformers.MobileViTConfig(image_size=IMAGE["mobilevit"], hidden_sizes=[32, 48, 64],
                                                          neck_hidden_sizes=[8, 16, 24, 32, 48, 64, 80],
                                                          num_attention_heads=HEADS,
                                                          attn_implementation="eager"),
        # separable linear attention over unfolded patches: torch exports the fold as Col2Im (opset 18)
        "mobilevitv2": lambda: transformers.MobileViTV2Config(image_size=IMAGE["mobilevitv2"], width_multiplier=0.25,
                                                              attn_implementation="eager"),
    }[family]()


def encoder(family: str) -> torch.nn.Module:
    """A small eager-attention model of ``family`` (one of TEXT or VISION), in eval mode: a wrapper
    left in train mode would export Dropout with ``training_mode=True``."""
    transformers = import_transformers()
    config = _config(family)
    torch.manual_seed(0)
    if family == "t5_encoder":
        model = transformers.T5EncoderModel(config)
    else:
        model = transformers.AutoModel.from_config(config)
    _randomize(model, seed=1, std=0.05)
    if family.startswith("mobilevit"):
        _randomize_convnet(model, seed=2, image=IMAGE[family])
    wrapper = (_Seq2SeqLastHiddenState if family in SEQ2SEQ else
               _PixelsLastHiddenState if family in VISION else _LastHiddenState)
    return wrapper(model).eval()


def _randomize_convnet(root: torch.nn.Module, seed: int, image: int) -> None:
    """Scale-preserving weights for a convolutional network: with a fixed std of 0.05 and identity
    BatchNorm statistics the signal shrinks at every block until MobileViT's output is its last
    bias, the same for every image. Convolutions and linears get std 1/sqrt(fan_in), BatchNorm an
    affine around (1, 0) and running statistics measured on random images, as training leaves them
    (and not the identity, so folding them is exercised)."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in root.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in root.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in ** 0.5)
        for norm in norms:
            norm.weight.copy_(1.0 + 0.1 * torch.randn(norm.num_features, generator=gen))
            norm.bias.copy_(0.1 * torch.randn(norm.num_features, generator=gen))
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the calibration batch
        root.train()
        root(pixel_values=torch.randn(8, 3, image, image, generator=gen))
        for norm in norms:
            norm.momentum = 0.1
    root.eval()


class _LastHiddenState(torch.nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state``: the positional signature
    ``torch.onnx.export`` needs (transformers 5 models take keyword arguments)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Seq2SeqLastHiddenState(_LastHiddenState):
    """Full encoder-decoder: ``(input_ids, attention_mask, decoder_input_ids) -> decoder last_hidden_state``."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          decoder_input_ids=decoder_input_ids).last_hidden_state


class _PixelsLastHiddenState(_LastHiddenState):
    """``pixel_values -> last_hidden_state`` (ViT: tokens; MobileViT: the last feature map)."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model(pixel_values=pixel_values).last_hidden_state


def input_names(family: str) -> list[str]:
    """The graph inputs of ``family``'s export, in the wrapper's argument order."""
    if family in VISION:
        return ["pixel_values"]
    return ["input_ids", "attention_mask"] + (["decoder_input_ids"] if family in SEQ2SEQ else [])


def sample(family: str, batch: int, length: int, gen: torch.Generator, *, pad: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs for ``family``: ``length`` tokens (ignored by vision families), the last ``pad``
    tokens of the first sequence masked out and, in a batch of several, the first ``pad`` of the
    last one (left padding, as batched generation with GPT-2 uses it); the decoder gets
    ``length - 1`` tokens, so the two sequence axes of full T5 differ."""
    if family in VISION:
        return (torch.randn(batch, 3, IMAGE[family], IMAGE[family], generator=gen),)
    ids = torch.randint(3, VOCAB, (batch, length), generator=gen)  # 0..2: pad/bos/eos ids of some families
    mask = torch.ones_like(ids)
    if pad:
        mask[0, length - pad:] = 0
        if batch > 1:
            mask[-1, :pad] = 0
    if family in SEQ2SEQ:
        return ids, mask, torch.randint(3, VOCAB, (batch, max(length - 1, 1)), generator=gen)
    return ids, mask


def export(module: torch.nn.Module, path: Path, *, opset: int, dynamo: bool = False, family: str = "bert") -> Path:
    """Export with a dynamic batch (and sequence length for text), as the transformers docs show."""
    args = sample(family, 2, 16, torch.Generator().manual_seed(3))
    names = input_names(family)
    if family in VISION:
        axes = {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    else:
        text = {0: "batch", 1: "sequence"}
        axes = {name: dict(text) for name in names + ["last_hidden_state"]}
        if family in SEQ2SEQ:
            axes["decoder_input_ids"] = axes["last_hidden_state"] = {0: "batch", 1: "decoder_sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["last_hidden_state"],
                          opset_version=opset, dynamo=dynamo, dynamic_axes=axes)
    return path
