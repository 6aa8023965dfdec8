"""Real producers of onnxruntime ``com.microsoft`` graphs, small enough for CI.

* BERT, GPT-2 (with past) and ViT from transformers configs (seeded random weights), exported by
  the TorchScript exporter, then rewritten by ``onnxruntime.transformers.optimizer.optimize_model``.
  onnxruntime's fusion patterns match the attention code of transformers 4.x; transformers 5
  still exports BERT in a form they know, but computes ViT's scores as ``(Q K^T) * scale`` and
  GPT-2's cache through a ``Cache`` object. So ViT runs with a registered attention function
  holding the 4.x arithmetic (``Q K^T / sqrt(d)``), and GPT-2 with the 4.x forward
  (:class:`LegacyGPT2`: past as one [2, B, N, P, H] tensor per layer, as onnxruntime's GPT-2 tools
  export it) over the same HF weights; both are checked against HF's own forward.
* Decoders of the HF corpus as onnxruntime saves them after its extended optimizations
  (:func:`ort_saved_optimized`).
* A Llama-style decoder in the form onnxruntime-genai's model builder writes: seqlens_k /
  total_sequence_length derived from ``attention_mask`` in the graph, SimplifiedLayerNormalization
  then SkipSimplifiedLayerNormalization residuals, GroupQueryAttention over past_key_values.*
  with rotary either inside GQA (packed QKV, ``do_rotary``) or as RotaryEmbedding nodes
  (separate Q/K/V, ``position_ids``), SiLU MLP, tied shapes with random weights.
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper


def import_transformers():
    """``transformers`` believing torchvision absent (it is installed for timm, but its CUDA-built
    ops crash on import here), whichever test imported transformers first."""
    if "torchvision" not in sys.modules:
        sys.modules["torchvision"] = None  # type: ignore[assignment]  # makes ``import torchvision`` fail
    import transformers
    from transformers.utils import import_utils

    if sys.modules.get("torchvision") is None:
        for check in ("is_torchvision_available", "is_torchvision_v2_available"):
            cached = getattr(import_utils, check, None)
            if hasattr(cached, "cache_clear"):
                cached.cache_clear()
    return transformers


def _randomize(root, seed: int, std: float = 0.2) -> None:
    """Seeded random values for every parameter (LayerNorm scales around 1), so that no two
    weights are equal and onnxruntime's optimizer cannot merge them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in root.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen) * std
                p.copy_(1.0 + noise if isinstance(module, torch.nn.LayerNorm) and name == "weight" else noise)


def _export(module, args: tuple, path: Path, input_names: list, output_names: list, dynamic_axes: dict,
            opset: int = 14) -> None:
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def _optimize(src: Path, dst: Path, model_type: str, num_heads: int, hidden: int, options=None) -> onnx.ModelProto:
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opt = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden,
                         optimization_options=options)
    opt.save_model_to_file(str(dst))
    return onnx.load(str(dst))


def ort_saved_optimized(src: Path, dst: Path, level: str = "extended") -> onnx.ModelProto:
    """The graph onnxruntime saves after its own optimizations (``optimized_model_filepath``), as
    users save it to skip them at load: at ``extended`` it holds com.microsoft fusions (FusedMatMul,
    QuickGelu for SiLU, FastGelu ...) that onnx's shape inference cannot follow."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(dst))


def op_types(model: onnx.ModelProto) -> set[str]:
    """``domain:op`` for contrib ops, ``op`` for default-domain ones."""
    return {f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in model.graph.node}


# --- BERT ---------------------------------------------------------------------------------------
def bert_optimized(workdir: Path, *, hidden: int = 32, heads: int = 4, layers: int = 2, seed: int = 0,
                   raw_mask: bool = False, gelu_approximation: bool = False,
                   multi_head_attention: bool = False) -> Path:
    """BertModel (eager attention) -> TorchScript ONNX opset 14 -> optimize_model('bert')."""
    tf = import_transformers()
    from onnxruntime.transformers.fusion_options import FusionOptions

    cfg = tf.BertConfig(vocab_size=64, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=32)
    cfg._attn_implementation = "eager"
    model = tf.BertModel(cfg).eval()
    _randomize(model, seed)

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             return_dict=False)

    ids = torch.zeros(2, 8, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    raw = workdir / "bert.onnx"
    _export(Wrapped().eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), raw, names,
            ["last_hidden_state", "pooler_output"], {n: {0: "batch", 1: "seq"} for n in names})
    options = FusionOptions("bert")
    options.use_raw_attention_mask(raw_mask)
    options.enable_gelu_approximation = gelu_approximation
    options.use_multi_head_attention = multi_head_attention
    out = workdir / "bert_opt.onnx"
    _optimize(raw, out, "bert", heads, hidden, options)
    return out


def bert_feeds(seed: int = 0, batch: int = 2, seq: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[1, seq - 3:] = 0  # right padding, as BERT's 1-D mask index assumes
    return {"input_ids": rng.integers(0, 64, (batch, seq)).astype(np.int64), "attention_mask": mask,
            "token_type_ids": rng.integers(0, 2, (batch, seq)).astype(np.int64)}


# --- ViT ----------------------------------------------------------------------------------------
def _legacy_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers 4.x eager attention arithmetic: scores = Q K^T / sqrt(d)."""
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.size(-1))
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def vit_optimized(workdir: Path, *, hidden: int = 32, heads: int = 4, layers: int = 2, seed: int = 0) -> Path:
    """ViTModel with transformers 4.x attention arithmetic -> TorchScript opset 14 -> optimize_model('vit')."""
    tf = import_transformers()
    tf.AttentionInterface.register("legacy_eager", _legacy_eager_attention)
    cfg = tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=2 * hidden)
    cfg._attn_implementation = "legacy_eager"
    model = tf.ViTModel(cfg).eval()
    _randomize(model, seed, std=0.1)
    pixels = torch.from_numpy(vit_feeds(seed)["pixel_values"])
    eager = copy.deepcopy(cfg)
    eager._attn_implementation = "eager"
    with torch.no_grad():
        reference = tf.ViTModel(eager).eval()
        reference.load_state_dict(model.state_dict())
        ours, theirs = model(pixel_values=pixels).last_hidden_state, reference(pixel_values=pixels).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-5), "the 4.x attention arithmetic changed ViT's output"

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = model

        def forward(self, pixel_values):
            return self.vit(pixel_values=pixel_values, return_dict=False)

    raw = workdir / "vit.onnx"
    _export(Wrapped().eval(), (pixels,), raw, ["pixel_values"], ["last_hidden_state", "pooler_output"],
            {"pixel_values": {0: "batch"}})
    out = workdir / "vit_opt.onnx"
    _optimize(raw, out, "vit", heads, hidden)
    return out


def vit_feeds(seed: int = 0, batch: int = 2) -> dict:
    return {"pixel_values": np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)}


# --- GPT-2 with past --------------------------------------------------------------------------------
class LegacyGPT2(torch.nn.Module):
    """transformers 4.x GPT2LMHeadModel forward over HF weights (onnxruntime's GPT-2 export form).

    Inputs: input_ids, position_ids, attention_mask [B, P+S] (1 keeps a token), past_i
    [2, B, N, P, H]; outputs: logits, present_i [2, B, N, P+S, H].
    """

    def __init__(self, hf) -> None:
        super().__init__()
        self.hf = hf
        cfg = hf.config
        self.heads, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        n = cfg.n_positions
        self.register_buffer("bias", torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n),
                             persistent=False)

    def _split(self, t):
        return t.view(t.size()[:-1] + (self.heads, self.head_dim)).permute(0, 2, 1, 3)

    def _attention(self, block, x, layer_past, mask):
        attn = block.attn
        q, k, v = attn.c_attn(x).split(attn.split_size, dim=2)
        q, k, v = self._split(q), self._split(k), self._split(v)
        k = torch.cat((layer_past[0], k), dim=-2)
        v = torch.cat((layer_past[1], v), dim=-2)
        present = torch.cat((k.unsqueeze(0), v.unsqueeze(0)), dim=0)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        q_len, k_len = q.size(-2), k.size(-2)
        causal = self.bias[:, :, k_len - q_len:k_len, :k_len]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = torch.softmax(w + mask, dim=-1)
        out = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return attn.c_proj(out.view(out.size()[:-2] + (self.heads * self.head_dim,))), present

    def forward(self, input_ids, position_ids, attention_mask, *past):
        t = self.hf.transformer
        mask = attention_mask.view(input_ids.size(0), -1)[:, None, None, :].to(torch.float32)
        mask = (1.0 - mask) * torch.finfo(torch.float32).min
        h = t.wte(input_ids) + t.wpe(position_ids)
        presents = []
        for block, layer_past in zip(t.h, past):
            a, present = self._attention(block, block.ln_1(h), layer_past, mask)
            h = h + a
            h = h + block.mlp(block.ln_2(h))
            presents.append(present)
        return (self.hf.lm_head(t.ln_f(h)), *presents)


def gpt2_past_optimized(workdir: Path, *, heads: int = 4, head_dim: int = 8, layers: int = 2, seed: int = 0) -> Path:
    """GPT2LMHeadModel in the 4.x past format -> TorchScript opset 14 -> optimize_model('gpt2')."""
    tf = import_transformers()
    cfg = tf.GPT2Config(vocab_size=64, n_embd=heads * head_dim, n_layer=layers, n_head=heads, n_positions=32)
    cfg._attn_implementation = "eager"
    hf = tf.GPT2LMHeadModel(cfg).eval()
    _randomize(hf, seed, std=0.1)
    model = LegacyGPT2(hf).eval()
    feeds = gpt2_feeds(seed, layers=layers, heads=heads, head_dim=head_dim)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    with torch.no_grad():
        ours = model(*args)
        cache = tf.DynamicCache(ddp_cache_data=[(p[0], p[1]) for p in args[3:]], config=cfg)
        theirs = hf(input_ids=args[0], position_ids=args[1], attention_mask=args[2], past_key_values=cache,
                    use_cache=True)
    assert torch.allclose(ours[0], theirs.logits, atol=1e-4), "the 4.x GPT-2 forward differs from transformers'"
    names = list(feeds)
    dynamic = {"input_ids": {0: "batch", 1: "seq"}, "position_ids": {0: "batch", 1: "seq"},
               "attention_mask": {0: "batch", 1: "total"}}
    dynamic.update({n: {1: "batch", 3: "past"} for n in names[3:]})
    dynamic.update({f"present_{i}": {1: "batch", 3: "total"} for i in range(layers)})
    raw = workdir / "gpt2.onnx"
    _export(model, args, raw, names, ["logits"] + [f"present_{i}" for i in range(layers)], dynamic)
    out = workdir / "gpt2_opt.onnx"
    _optimize(raw, out, "gpt2", heads, heads * head_dim)
    return out


def gpt2_feeds(seed: int = 0, *, batch: int = 2, seq: int = 3, past: int = 5, layers: int = 2, heads: int = 4,
               head_dim: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, past + seq), np.int64)
    mask[1, :2] = 0  # left padding in the second row
    feeds = {"input_ids": rng.integers(0, 64, (batch, seq)).astype(np.int64),
             "position_ids": np.tile(np.arange(past, past + seq, dtype=np.int64), (batch, 1)),
             "attention_mask": mask}
    for i in range(layers):
        feeds[f"past_{i}"] = (rng.standard_normal((2, batch, heads, past, head_dim)) * 0.5).astype(np.float32)
    return feeds


# --- GQA decoder (onnxruntime-genai model builder form) --------------------------------------------
class DecoderSpec:
    """A tiny Llama-style decoder."""

    def __init__(self, *, vocab: int = 48, hidden: int = 64, heads: int = 4, kv_heads: int = 2, layers: int = 2,
                 inter: int = 96, max_pos: int = 64, window: int = -1) -> None:
        self.vocab, self.hidden, self.heads, self.kv_heads = vocab, hidden, heads, kv_heads
        self.layers, self.inter, self.max_pos, self.window = layers, inter, max_pos, window
        self.head_dim = hidden // heads


def gqa_decoder(spec: DecoderSpec, *, packed_rotary_in_gqa: bool, seed: int = 0) -> onnx.ModelProto:
    """The decoder graph; ``packed_rotary_in_gqa``: one QKV MatMul and GQA's own rotary, else
    Q/K/V MatMuls with RotaryEmbedding nodes fed ``position_ids``."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def weight(name: str, *shape: int, scale: float = 0.1, around_one: bool = False) -> str:
        value = rng.standard_normal(shape) * scale + (1.0 if around_one else 0.0)
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list, outputs: list, domain: str = "", **attrs) -> list:
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0] + "_node", domain=domain, **attrs))
        return outputs

    hd, nq, nkv = spec.head_dim, spec.heads, spec.kv_heads
    inv_freq = 1.0 / (10000.0 ** (np.arange(0, hd, 2) / hd))
    angles = np.outer(np.arange(spec.max_pos), inv_freq)
    const("cos_cache", np.cos(angles).astype(np.float32))
    const("sin_cache", np.sin(angles).astype(np.float32))
    const("one", np.array([1], np.int64))
    const("one_scalar", np.array(1, np.int64))

    # attention-mask preprocessing, as the builder writes it
    node("ReduceSum", ["attention_mask", "one"], ["mask_sum"])
    node("Sub", ["mask_sum", "one"], ["seqlens_k_64"])
    node("Cast", ["seqlens_k_64"], ["seqlens_k"], to=TensorProto.INT32)
    node("Shape", ["attention_mask"], ["mask_shape"])
    node("Gather", ["mask_shape", "one_scalar"], ["total_64"], axis=0)
    node("Cast", ["total_64"], ["total_seq_len"], to=TensorProto.INT32)

    node("Gather", [weight("embed_tokens", spec.vocab, spec.hidden, scale=0.5), "input_ids"], ["embeds"])
    residual, normed = "embeds", None
    gqa_attrs = {"num_heads": nq, "kv_num_heads": nkv, "local_window_size": spec.window}
    for i in range(spec.layers):
        p = f"layers.{i}"
        ln_w = weight(f"{p}.input_layernorm.weight", spec.hidden, around_one=True)
        if i == 0:
            normed = node("SimplifiedLayerNormalization", [residual, ln_w], [f"{p}.ln1"], axis=-1,
                          epsilon=1e-5)[0]
        else:
            normed, _, _, residual = node("SkipSimplifiedLayerNormalization", [attn_mlp_out, residual, ln_w],
                                          [f"{p}.ln1", "", "", f"{p}.res1"], domain="com.microsoft", epsilon=1e-5)
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        present = [f"present.{i}.key", f"present.{i}.value"]
        if packed_rotary_in_gqa:
            qkv = node("MatMul", [normed, weight(f"{p}.qkv_proj", spec.hidden, (nq + 2 * nkv) * hd)], [f"{p}.qkv"])[0]
            attn = node("GroupQueryAttention", [qkv, "", "", past_k, past_v, "seqlens_k", "total_seq_len",
                                                "cos_cache", "sin_cache"], [f"{p}.attn"] + present,
                        domain="com.microsoft", do_rotary=1, **gqa_attrs)[0]
        else:
            q = node("MatMul", [normed, weight(f"{p}.q_proj", spec.hidden, nq * hd)], [f"{p}.q"])[0]
            k = node("MatMul", [normed, weight(f"{p}.k_proj", spec.hidden, nkv * hd)], [f"{p}.k"])[0]
            v = node("MatMul", [normed, weight(f"{p}.v_proj", spec.hidden, nkv * hd)], [f"{p}.v"])[0]
            q = node("RotaryEmbedding", [q, "position_ids", "cos_cache", "sin_cache"], [f"{p}.q_rot"],
                     domain="com.microsoft", num_heads=nq)[0]
            k = node("RotaryEmbedding", [k, "position_ids", "cos_cache", "sin_cache"], [f"{p}.k_rot"],
                     domain="com.microsoft", num_heads=nkv)[0]
            attn = node("GroupQueryAttention", [q, k, v, past_k, past_v, "seqlens_k", "total_seq_len"],
                        [f"{p}.attn"] + present, domain="com.microsoft", **gqa_attrs)[0]
        o = node("MatMul", [attn, weight(f"{p}.o_proj", nq * hd, spec.hidden)], [f"{p}.o"])[0]
        ln2_w = weight(f"{p}.post_attention_layernorm.weight", spec.hidden, around_one=True)
        normed2, _, _, residual = node("SkipSimplifiedLayerNormalization", [o, residual, ln2_w],
                                       [f"{p}.ln2", "", "", f"{p}.res2"], domain="com.microsoft", epsilon=1e-5)
        gate = node("MatMul", [normed2, weight(f"{p}.gate_proj", spec.hidden, spec.inter)], [f"{p}.gate"])[0]
        up = node("MatMul", [normed2, weight(f"{p}.up_proj", spec.hidden, spec.inter)], [f"{p}.up"])[0]
        sig = node("Sigmoid", [gate], [f"{p}.sig"])[0]
        silu = node("Mul", [gate, sig], [f"{p}.silu"])[0]
        act = node("Mul", [silu, up], [f"{p}.act"])[0]
        attn_mlp_out = node("MatMul", [act, weight(f"{p}.down_proj", spec.inter, spec.hidden)], [f"{p}.down"])[0]
    final, _, _, _ = node("SkipSimplifiedLayerNormalization",
                          [attn_mlp_out, residual, weight("norm.weight", spec.hidden, around_one=True)],
                          ["final_norm", "", "", "final_res"], domain="com.microsoft", epsilon=1e-5)
    node("MatMul", [final, weight("lm_head", spec.hidden, spec.vocab)], ["logits"])

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"])]
    if not packed_rotary_in_gqa:
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", spec.vocab])]
    for i in range(spec.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT,
                                                        ["batch", nkv, "past", hd]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT,
                                                         ["batch", nkv, "total", hd]))
    graph = helper.make_graph(nodes, "decoder", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def decoder_feeds(spec: DecoderSpec, input_ids: np.ndarray, past: Optional[dict], past_len: int,
                  with_position_ids: bool) -> dict:
    """Inputs for one step over ``input_ids`` [B, S] after ``past_len`` cached tokens (all rows
    full length, as in a batch of equal prompts)."""
    batch, seq = input_ids.shape
    feeds = {"input_ids": input_ids.astype(np.int64),
             "attention_mask": np.ones((batch, past_len + seq), np.int64)}
    if with_position_ids:
        feeds["position_ids"] = np.tile(np.arange(past_len, past_len + seq, dtype=np.int64), (batch, 1))
    for i in range(spec.layers):
        for kind in ("key", "value"):
            name = f"past_key_values.{i}.{kind}"
            feeds[name] = past[name] if past else np.zeros((batch, spec.kv_heads, 0, spec.head_dim), np.float32)
    return feeds
