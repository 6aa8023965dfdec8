"""A wider corpus of Hugging Face ``transformers`` architectures, exported as users export them.

:mod:`tests.support.encoder_corpus` holds the twelve families the converter was first written
against (BERT, GPT-2, T5, ViT, ...). This module adds the families a corpus sweep found converting
correctly, so that each keeps doing so: encoders with unusual attention (DeBERTa-v2's
disentangled relative positions, MobileBERT's bottlenecks, SqueezeBERT's grouped convolutions,
ConvBERT's span convolutions, Funnel's pooling), encoder-decoders (BART, Marian, Pegasus, Whisper),
decoders (OPT, GPT-Neo's local attention, GPT-J/CodeGen/Phi/Mistral/Qwen2/Gemma rotary, Bloom's
ALiBi, Falcon's and GPTBigCode's multi-query attention, grouped-query attention), wav2vec2 on raw
audio, CLIP, and vision models from ViT variants to convolutional networks.

Every model is tiny (hidden 64, 2 layers, vocabulary 500: the sizes of the encoder corpus) so that
one builds and exports in a few seconds, uses eager attention (what the exporters trace
reliably), and has seeded random weights at a realistic scale (:func:`_seed_weights`: the
encoder corpus's randomizers, with every normalization scale around 1). BERT and GPT-2, which the
sweep also ran, are left out: the encoder corpus tests them already.

Each model is wrapped to a positional signature returning the last hidden state, which is what
``torch.onnx.export`` needs; :func:`sample` makes inputs of any batch and length, :func:`export`
writes the ONNX file with a dynamic batch (and a dynamic length where the model has one).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import torch

from .contrib_models import _randomize, import_transformers
from .encoder_corpus import (HEADS, HIDDEN, LAYERS, VOCAB, _LastHiddenState, _PixelsLastHiddenState,
                             _randomize_convnet, _Seq2SeqLastHiddenState)
from .encoder_corpus import sample as _text_sample

# Input kinds. "encoder" and "decoder" both take (input_ids, attention_mask); the distinction only
# documents the table (decoders are causal, and their padding is on the left in batched use).
ENCODER, DECODER, SEQ2SEQ, SPEECH_SEQ2SEQ, AUDIO, VISION, CONVNET = (
    "encoder", "decoder", "seq2seq", "speech_seq2seq", "audio", "vision", "convnet")
TEXT_KINDS = (ENCODER, DECODER, SEQ2SEQ)

EXPORT_BATCH, EXPORT_LENGTH = 2, 16  # the shape the ONNX files are traced at
MEL_BINS, MEL_FRAMES = 16, 64  # Whisper: its encoder requires exactly 2 * max_source_positions frames


@dataclass(frozen=True)
class Family:
    """How to build one architecture: its input ``kind``, a config factory (given the
    ``transformers`` module), the model class when ``AutoModel`` would pick the wrong one, and
    the square image size of vision transformers (convolutional networks take any size: see
    :func:`convnet_side`)."""

    kind: str
    config: Callable[[ModuleType], Any]
    model_class: Optional[str] = None
    image: int = 32


def _bert_like(**overrides: Any) -> dict:
    return dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                intermediate_size=2 * HIDDEN, **overrides)


def _decoder(**overrides: Any) -> dict:
    return _bert_like(max_position_embeddings=128, use_cache=False, **overrides)


def _seq2seq(**overrides: Any) -> dict:
    settings = dict(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
                    encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=2 * HIDDEN,
                    decoder_ffn_dim=2 * HIDDEN, max_position_embeddings=128, use_cache=False, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    settings.update(overrides)
    return settings


FAMILIES: dict[str, Family] = {
    # --- encoders -------------------------------------------------------------------------------
    "deberta_v2": Family(ENCODER, lambda hf: hf.DebertaV2Config(**_bert_like(
        max_position_embeddings=128, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
        max_relative_positions=32))),
    "mobilebert": Family(ENCODER, lambda hf: hf.MobileBertConfig(**_bert_like(
        embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32, num_feedforward_networks=2))),
    "squeezebert": Family(ENCODER, lambda hf: hf.SqueezeBertConfig(**_bert_like(
        embedding_size=HIDDEN, q_groups=2, k_groups=2, v_groups=2, post_attention_groups=2, intermediate_groups=2,
        output_groups=2))),
    "convbert": Family(ENCODER, lambda hf: hf.ConvBertConfig(**_bert_like(
        embedding_size=HIDDEN, head_ratio=2, conv_kernel_size=3))),
    # RoBERTa-style positions start after the padding index: 128 tokens need 130 positions
    "xlm_roberta": Family(ENCODER, lambda hf: hf.XLMRobertaConfig(**_bert_like(max_position_embeddings=130))),
    "mpnet": Family(ENCODER, lambda hf: hf.MPNetConfig(**_bert_like(max_position_embeddings=130))),
    # FunnelModel (AutoModel builds FunnelBaseModel, without the upsampling decoder)
    "funnel": Family(ENCODER, lambda hf: hf.FunnelConfig(
        vocab_size=VOCAB, block_sizes=[1, 1], d_model=HIDDEN, n_head=HEADS, d_head=HIDDEN // HEADS,
        d_inner=2 * HIDDEN, num_decoder_layers=1), model_class="FunnelModel"),
    "clip_text": Family(ENCODER, lambda hf: hf.CLIPTextConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, max_position_embeddings=64, projection_dim=32), model_class="CLIPTextModel"),
    # --- encoder-decoders -----------------------------------------------------------------------
    "bart": Family(SEQ2SEQ, lambda hf: hf.BartConfig(**_seq2seq())),
    "marian": Family(SEQ2SEQ, lambda hf: hf.MarianConfig(**_seq2seq(decoder_start_token_id=1,
                                                                     decoder_vocab_size=VOCAB))),
    "pegasus": Family(SEQ2SEQ, lambda hf: hf.PegasusConfig(**_seq2seq(pad_token_id=0))),
    # its encoder takes exactly 2 * max_source_positions mel frames
    "whisper": Family(SPEECH_SEQ2SEQ, lambda hf: hf.WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=MEL_BINS, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=2 * HIDDEN,
        decoder_ffn_dim=2 * HIDDEN, max_source_positions=MEL_FRAMES // 2, max_target_positions=64,
        use_cache=False, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=0)),
    # --- decoders -------------------------------------------------------------------------------
    "opt": Family(DECODER, lambda hf: hf.OPTConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        ffn_dim=2 * HIDDEN, max_position_embeddings=128, word_embed_proj_dim=HIDDEN, use_cache=False,
        pad_token_id=1)),
    # one global and one local (window 8) attention layer
    "gpt_neo": Family(DECODER, lambda hf: hf.GPTNeoConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
        attention_types=[[["global", "local"], 1]], window_size=8, max_position_embeddings=128,
        intermediate_size=2 * HIDDEN, use_cache=False)),
    "gptj": Family(DECODER, lambda hf: hf.GPTJConfig(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, rotary_dim=8, n_positions=128,
        use_cache=False)),
    "codegen": Family(DECODER, lambda hf: hf.CodeGenConfig(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, rotary_dim=8, n_positions=128, n_ctx=128,
        use_cache=False)),
    "bloom": Family(DECODER, lambda hf: hf.BloomConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS, use_cache=False)),
    # rotary embeddings with grouped-query attention (2 key/value heads for 4 query heads)
    "mistral": Family(DECODER, lambda hf: hf.MistralConfig(**_decoder(num_key_value_heads=2, sliding_window=None))),
    "qwen2": Family(DECODER, lambda hf: hf.Qwen2Config(**_decoder(num_key_value_heads=2))),
    "phi": Family(DECODER, lambda hf: hf.PhiConfig(**_decoder(partial_rotary_factor=0.5))),
    "gemma": Family(DECODER, lambda hf: hf.GemmaConfig(**_decoder(num_key_value_heads=1, head_dim=16))),
    "falcon": Family(DECODER, lambda hf: hf.FalconConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        new_decoder_architecture=False, multi_query=True, parallel_attn=True, alibi=False, use_cache=False)),
    "gpt_bigcode": Family(DECODER, lambda hf: hf.GPTBigCodeConfig(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=128, multi_query=True,
        use_cache=False)),
    # --- audio ----------------------------------------------------------------------------------
    "wav2vec2": Family(AUDIO, lambda hf: hf.Wav2Vec2Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=2 * HIDDEN, conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=False,
        feat_extract_norm="group")),
    # --- vision transformers (position embeddings fix the image size: dynamic batch only) -------
    "clip_vision": Family(VISION, lambda hf: hf.CLIPVisionConfig(
        hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        image_size=32, patch_size=8, projection_dim=32), model_class="CLIPVisionModel"),
    "swin": Family(VISION, lambda hf: hf.SwinConfig(
        image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4)),
    "deit": Family(VISION, lambda hf: hf.DeiTConfig(**_bert_like(image_size=32, patch_size=8))),
    "beit": Family(VISION, lambda hf: hf.BeitConfig(**_bert_like(
        image_size=32, patch_size=8, use_relative_position_bias=True, use_mask_token=False))),
    "dinov2": Family(VISION, lambda hf: hf.Dinov2Config(**_bert_like(image_size=32, patch_size=8))),
    "levit": Family(VISION, lambda hf: hf.LevitConfig(
        image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[2, 2, 2], depths=[1, 1, 1],
        key_dim=[8, 8, 8], patch_size=16, stride=2,
        down_ops=[["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 2, 4, 2, 2]]), image=64),
    "segformer": Family(VISION, lambda hf: hf.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
        patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=32, image_size=32)),
    # --- convolutional networks (dynamic batch, height and width) -------------------------------
    "convnext": Family(CONVNET, lambda hf: hf.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2,
                                                               patch_size=4)),
    "regnet": Family(CONVNET, lambda hf: hf.RegNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                           groups_width=8, layer_type="y")),
    "resnet": Family(CONVNET, lambda hf: hf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                           layer_type="bottleneck")),
    "efficientnet": Family(CONVNET, lambda hf: hf.EfficientNetConfig(
        image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320)),
    "mobilenet_v2": Family(CONVNET, lambda hf: hf.MobileNetV2Config(image_size=32, depth_multiplier=0.25)),
}


def kind(family: str) -> str:
    return FAMILIES[family].kind


class _AudioLastHiddenState(_LastHiddenState):
    """``input_values`` (raw 16 kHz samples) -> ``last_hidden_state``."""

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model(input_values=input_values).last_hidden_state


class _SpeechSeq2SeqLastHiddenState(_LastHiddenState):
    """Whisper: ``(input_features, decoder_input_ids) -> decoder last_hidden_state``."""

    def forward(self, input_features: torch.Tensor,  # type: ignore[override]
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_features=input_features, decoder_input_ids=decoder_input_ids).last_hidden_state


_WRAPPERS: dict[str, type[_LastHiddenState]] = {
    ENCODER: _LastHiddenState, DECODER: _LastHiddenState, SEQ2SEQ: _Seq2SeqLastHiddenState,
    SPEECH_SEQ2SEQ: _SpeechSeq2SeqLastHiddenState, AUDIO: _AudioLastHiddenState,
    VISION: _PixelsLastHiddenState, CONVNET: _PixelsLastHiddenState}


def build(family: str) -> torch.nn.Module:
    """The small seeded model of ``family`` behind its positional wrapper, in eval mode (a
    module left in train mode would export Dropout with ``training_mode=True``)."""
    spec = FAMILIES[family]
    transformers = import_transformers()
    config = spec.config(transformers)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    if spec.model_class:
        model = getattr(transformers, spec.model_class)(config)
    else:
        model = transformers.AutoModel.from_config(config)
    # BatchNorm statistics measured at the size the model runs at (convnets: the export's image side)
    _seed_weights(model, image=convnet_side(EXPORT_LENGTH) if spec.kind == CONVNET else spec.image)
    return _WRAPPERS[spec.kind](model).eval()


def _seed_weights(model: torch.nn.Module, image: int) -> None:
    """Seeded random weights (std 0.05) with the scale of trained ones.

    :func:`_randomize` centres ``torch.nn.LayerNorm`` scales on 1, but not the other
    normalizations (RMSNorm of the Llama-style decoders, MobileBERT's NoNorm, wav2vec2's GroupNorm,
    LeViT's BatchNorm1d): at 0.05 each of them shrinks the signal twentyfold, until MobileBERT's
    output no longer depends on its input and the decoders' attention is uniform (scores near 0),
    which hides any error in rotary embeddings or masks. Their scales get the noise on top of
    their initial value (1, or 0 for Gemma's ``1 + weight``). Networks with BatchNorm2d then get
    :func:`_randomize_convnet`'s fan-in scaled weights and statistics calibrated on random images
    of side ``image`` (its train-mode pass also moves LeViT's BatchNorm1d statistics off the
    identity).
    """
    scales = [(module.weight, module.weight.detach().clone()) for module in model.modules()
              if "Norm" in type(module).__name__ and not isinstance(module, torch.nn.LayerNorm)
              and isinstance(getattr(module, "weight", None), torch.nn.Parameter)]
    _randomize(model, seed=1, std=0.05)
    with torch.no_grad():
        for weight, initial in scales:
            weight.add_(initial)
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        _randomize_convnet(model, seed=2, image=image)


def input_names(family: str) -> list[str]:
    """The graph inputs of ``family``'s export, in the wrapper's argument order."""
    return {ENCODER: ["input_ids", "attention_mask"], DECODER: ["input_ids", "attention_mask"],
            SEQ2SEQ: ["input_ids", "attention_mask", "decoder_input_ids"],
            SPEECH_SEQ2SEQ: ["input_features", "decoder_input_ids"], AUDIO: ["input_values"],
            VISION: ["pixel_values"], CONVNET: ["pixel_values"]}[kind(family)]


def audio_samples(length: int) -> int:
    """Raw samples for wav2vec2 at ``length``: its feature extractor (strides 5, 2, 2: a frame
    per 20 samples) makes 51 frames of them at the export's 16, 41 at 11 and 29 at 5."""
    return 400 + 40 * length


def convnet_side(length: int) -> int:
    """Image side of a convolutional network at ``length``: 48 at the export's 16, odd sizes
    (43, 37) at lengths 11 and 5, so that the padding arithmetic of strided layers is exercised.
    Not below 32: smaller images make EfficientNet fail in eager PyTorch (a 5x5 kernel larger
    than its padded input)."""
    return 32 + length


def sample(family: str, batch: int, length: int, gen: torch.Generator, pad: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs for ``family`` in the wrapper's argument order.

    ``length`` is the token count of text (the decoder of a seq2seq model gets ``length - 1``, so
    its two sequence axes differ), Whisper's decoder token count (its encoder takes a fixed
    ``MEL_FRAMES``), :func:`audio_samples` of wav2vec2 and :func:`convnet_side` of convolutional
    networks; vision transformers ignore it. ``pad`` (text only) masks the last ``pad`` tokens of
    the first sequence and the first ``pad`` of the last one, as in :func:`encoder_corpus.sample`,
    whose token scheme this reuses.
    """
    k = kind(family)
    if k in TEXT_KINDS:
        return _text_sample("t5" if k == SEQ2SEQ else "bert", batch, length, gen, pad=pad)
    if pad:
        raise ValueError(f"{family}: padding applies to text models only")
    if k == SPEECH_SEQ2SEQ:
        return (torch.randn(batch, MEL_BINS, MEL_FRAMES, generator=gen),
                torch.randint(3, VOCAB, (batch, length), generator=gen))
    if k == AUDIO:
        return (torch.randn(batch, audio_samples(length), generator=gen),)
    side = convnet_side(length) if k == CONVNET else FAMILIES[family].image
    return (torch.randn(batch, 3, side, side, generator=gen),)


def dynamic_axes(family: str) -> dict[str, dict[int, str]]:
    """The axes left free in the export, per input and for the output ``last_hidden_state``."""
    k = kind(family)
    text = {0: "batch", 1: "sequence"}
    decoder = {0: "batch", 1: "decoder_sequence"}
    return {
        ENCODER: {"input_ids": text, "attention_mask": text, "last_hidden_state": text},
        DECODER: {"input_ids": text, "attention_mask": text, "last_hidden_state": text},
        SEQ2SEQ: {"input_ids": text, "attention_mask": text, "decoder_input_ids": decoder,
                  "last_hidden_state": decoder},
        SPEECH_SEQ2SEQ: {"input_features": {0: "batch"}, "decoder_input_ids": decoder, "last_hidden_state": decoder},
        AUDIO: {"input_values": {0: "batch", 1: "samples"}, "last_hidden_state": {0: "batch", 1: "frames"}},
        VISION: {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}},
        CONVNET: {"pixel_values": {0: "batch", 2: "height", 3: "width"},
                  "last_hidden_state": {0: "batch", 2: "feature_height", 3: "feature_width"}},
    }[k]


def export(family: str, path: Path, opset: int, dynamo: bool = False,
           module: Optional[torch.nn.Module] = None) -> Path:
    """Export ``family`` (``module`` if given, else a fresh :func:`build`) at batch 2, length 16.

    The TorchScript exporter gets ``dynamic_axes``; dynamo gets the same axes as
    ``Dim.AUTO`` dynamic shapes, which lets a size the model specializes on (Funnel's pooled
    lengths) become static instead of failing the export, as a user would see it.
    """
    module = module if module is not None else build(family)
    args = sample(family, EXPORT_BATCH, EXPORT_LENGTH, torch.Generator().manual_seed(3))
    names = input_names(family)
    axes = dynamic_axes(family)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            shapes = tuple({dim: torch.export.Dim.AUTO for dim in axes[name]} for name in names)
            torch.onnx.export(module, args, str(path), input_names=names, output_names=["last_hidden_state"],
                              opset_version=opset, dynamo=True, dynamic_shapes=shapes)
        else:
            torch.onnx.export(module, args, str(path), input_names=names, output_names=["last_hidden_state"],
                              opset_version=opset, dynamo=False, dynamic_axes=axes)
    return Path(path)
