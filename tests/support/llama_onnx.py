"""A Llama-style decoder-only ONNX model of any size, built without holding its weights in memory.

The graph is written with ``onnx.helper`` in the form exporters give LLMs: token embedding,
per layer RMSNorm -> attention (rotary position embedding, grouped-query heads, ``past_key_values``
inputs and ``present`` outputs, causal mask over past + new positions) -> residual, RMSNorm ->
SwiGLU MLP -> residual, then a final RMSNorm and ``lm_head``. Only standard ONNX ops (opset 18).

Weights come from a seeded generator and go straight into the external data file, chunk by chunk
(at most :data:`CHUNK_BYTES` in memory), so a model of several GB builds in a few hundred MB.

Inputs: ``input_ids`` int64 [batch, seq], ``past_key_values.{i}.key/value`` float32
[batch, kv_heads, past, head_dim] (past may be 0). Outputs: ``logits`` [batch, seq, vocab],
``present.{i}.key/value`` [batch, kv_heads, past + seq, head_dim].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHUNK_BYTES = 32 << 20
OPSET = 18


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    rope_theta: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def weight_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every weight, in file order (MatMul weights as [in, out])."""
        kv = self.kv_heads * self.head_dim
        shapes = [("model.embed_tokens.weight", (self.vocab, self.hidden))]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            shapes += [(p + "input_layernorm.weight", (self.hidden,)),
                       (p + "self_attn.q_proj.weight", (self.hidden, self.hidden)),
                       (p + "self_attn.k_proj.weight", (self.hidden, kv)),
                       (p + "self_attn.v_proj.weight", (self.hidden, kv)),
                       (p + "self_attn.o_proj.weight", (self.hidden, self.hidden)),
                       (p + "post_attention_layernorm.weight", (self.hidden,)),
                       (p + "mlp.gate_proj.weight", (self.hidden, self.intermediate)),
                       (p + "mlp.up_proj.weight", (self.hidden, self.intermediate)),
                       (p + "mlp.down_proj.weight", (self.intermediate, self.hidden))]
        shapes += [("model.norm.weight", (self.hidden,)), ("lm_head.weight", (self.hidden, self.vocab))]
        return shapes

    @property
    def parameters(self) -> int:
        return sum(int(np.prod(s)) for _, s in self.weight_shapes())


# TinyLlama-1.1B's dimensions with 20 instead of 22 layers: 1.01e9 parameters, 4.0 GB of float32.
LLAMA_1B = LlamaConfig(vocab=32000, hidden=2048, layers=20, heads=32, kv_heads=4, intermediate=5632)
# The same graph at toy size, for the default test set.
LLAMA_TINY = LlamaConfig(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160)


def _write_weight(handle, rng: np.random.Generator, shape: tuple[int, ...], norm: bool) -> None:
    """Rows of the weight, generated and written a chunk at a time."""
    rows, row_size = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if norm:  # RMSNorm scales: near 1
        handle.write((1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32).tobytes())
        return
    scale = 1.0 / np.sqrt(shape[0]) if len(shape) == 2 else 0.02
    step = max(1, CHUNK_BYTES // (4 * row_size))
    for start in range(0, rows, step):
        n = min(step, rows - start)
        handle.write((rng.standard_normal((n, row_size), dtype=np.float32) * np.float32(scale)).tobytes())


def _external(name: str, shape: tuple[int, ...], location: str, offset: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
    tensor.data_location = TensorProto.EXTERNAL
    length = 4 * int(np.prod(shape))
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


class _Graph:
    """Node list with unique output names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.consts: list[TensorProto] = []
        self._n = 0

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, name: str = "", **attrs) -> "str | list[str]":
        self._n += 1
        base = name or f"{op_type.lower()}_{self._n}"
        outs = [base if outputs == 1 else f"{base}_{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"/{base}", **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, name: str, value: np.ndarray) -> str:
        self.consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name


def _rms_norm(g: _Graph, x: str, weight: str, eps: str, axes: str, prefix: str) -> str:
    var = g.op("ReduceMean", [g.op("Mul", [x, x]), axes], keepdims=1)
    inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, eps])])])
    return g.op("Mul", [g.op("Mul", [x, inv]), weight], name=prefix)


def _rotate(g: _Graph, x: str, cos: str, sin: str, c: dict[str, str]) -> str:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x2, x1) of the two halves of the last axis."""
    first = g.op("Slice", [x, c["zero1"], c["half"], c["last"]])
    second = g.op("Slice", [x, c["half"], c["big"], c["last"]])
    rotated = g.op("Concat", [g.op("Neg", [second]), first], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])


def _graph(cfg: LlamaConfig, weights: list[TensorProto]) -> onnx.GraphProto:
    g = _Graph()
    d, h, kvh = cfg.head_dim, cfg.heads, cfg.kv_heads
    c = {
        "eps": g.const("rms_eps", np.array(cfg.eps, np.float32)),
        "axes": g.const("rms_axes", np.array([-1], np.int64)),
        "zero1": g.const("zero_1d", np.array([0], np.int64)),
        "half": g.const("half_head", np.array([d // 2], np.int64)),
        "big": g.const("to_end", np.array([2**62], np.int64)),
        "last": g.const("last_axis", np.array([-1], np.int64)),
        "scale": g.const("attn_scale", np.array(1.0 / np.sqrt(d), np.float32)),
        "neg": g.const("mask_value", np.array(-1e9, np.float32)),
        "zerof": g.const("zero_f", np.array(0.0, np.float32)),
        "one": g.const("one_i", np.array(1, np.int64)),
        "zero": g.const("zero_i", np.array(0, np.int64)),
        "two": g.const("two_i", np.array(2, np.int64)),
        "q_shape": g.const("q_shape", np.array([0, 0, h, d], np.int64)),
        "kv_shape": g.const("kv_shape", np.array([0, 0, kvh, d], np.int64)),
        "grouped": g.const("grouped_shape", np.array([0, kvh, -1, d], np.int64)),
        "grouped_scores": g.const("grouped_scores_shape", np.array([0, kvh, -1, 0], np.int64)),
        "scores": g.const("scores_shape", np.array([0, h, -1, 0], np.int64)),
        "heads": g.const("heads_shape", np.array([0, h, -1, d], np.int64)),
        "merged": g.const("merged_shape", np.array([0, 0, h * d], np.int64)),
        "inv_freq": g.const("rope_inv_freq", (1.0 / cfg.rope_theta ** (np.arange(0, d, 2) / d)).astype(np.float32)),
    }
    # positions: past .. past + seq - 1 (queries), 0 .. past + seq - 1 (keys)
    past = g.op("Gather", [g.op("Shape", ["past_key_values.0.key"]), c["two"]], axis=0, name="past_length")
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), c["one"]], axis=0, name="seq_length")
    total = g.op("Add", [past, seq], name="total_length")
    q_pos = g.op("Range", [past, total, c["one"]], name="query_positions")
    k_pos = g.op("Range", [c["zero"], total, c["one"]], name="key_positions")
    future = g.op("Greater", [g.op("Unsqueeze", [k_pos, c["zero1"]]), g.op("Unsqueeze", [q_pos, c["last"]])])
    mask = g.op("Where", [future, c["neg"], c["zerof"]], name="causal_mask")  # [seq, total]
    freqs = g.op("Mul", [g.op("Unsqueeze", [g.op("Cast", [q_pos], to=TensorProto.FLOAT), c["last"]]), c["inv_freq"]])
    emb = g.op("Concat", [freqs, freqs], axis=-1)
    cos, sin = g.op("Cos", [emb], name="rope_cos"), g.op("Sin", [emb], name="rope_sin")  # [seq, head_dim]

    x = g.op("Gather", ["model.embed_tokens.weight", "input_ids"], axis=0, name="embeddings")
    outputs = []
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        hs = _rms_norm(g, x, p + "input_layernorm.weight", c["eps"], c["axes"], f"layers.{i}.input_norm")
        heads = {}
        for proj, shape, n in (("q", c["q_shape"], h), ("k", c["kv_shape"], kvh), ("v", c["kv_shape"], kvh)):
            y = g.op("MatMul", [hs, f"{p}self_attn.{proj}_proj.weight"], name=f"layers.{i}.{proj}_proj")
            heads[proj] = g.op("Transpose", [g.op("Reshape", [y, shape])], perm=[0, 2, 1, 3])  # [b, n, s, d]
        q = _rotate(g, heads["q"], cos, sin, c)
        k = _rotate(g, heads["k"], cos, sin, c)
        key = g.op("Concat", [f"past_key_values.{i}.key", k], axis=2, name=f"present.{i}.key")
        value = g.op("Concat", [f"past_key_values.{i}.value", heads["v"]], axis=2, name=f"present.{i}.value")
        outputs += [key, value]
        # grouped-query attention: query heads h = kv * (h / kvh) + r share key/value head kv
        qg = g.op("Reshape", [q, c["grouped"]])
        scores = g.op("MatMul", [qg, g.op("Transpose", [key], perm=[0, 1, 3, 2])])
        scores = g.op("Reshape", [scores, c["scores"]])  # [b, h, s, total]
        scores = g.op("Add", [g.op("Mul", [scores, c["scale"]]), mask])
        probs = g.op("Softmax", [scores], axis=-1, name=f"layers.{i}.attn_probs")
        ctx = g.op("MatMul", [g.op("Reshape", [probs, c["grouped_scores"]]), value])
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [ctx, c["heads"]])], perm=[0, 2, 1, 3]), c["merged"]])
        x = g.op("Add", [x, g.op("MatMul", [ctx, p + "self_attn.o_proj.weight"], name=f"layers.{i}.o_proj")])
        hs = _rms_norm(g, x, p + "post_attention_layernorm.weight", c["eps"], c["axes"], f"layers.{i}.post_norm")
        gate = g.op("MatMul", [hs, p + "mlp.gate_proj.weight"], name=f"layers.{i}.gate_proj")
        up = g.op("MatMul", [hs, p + "mlp.up_proj.weight"], name=f"layers.{i}.up_proj")
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up], name=f"layers.{i}.swiglu")
        x = g.op("Add", [x, g.op("MatMul", [act, p + "mlp.down_proj.weight"], name=f"layers.{i}.down_proj")])
    hs = _rms_norm(g, x, "model.norm.weight", c["eps"], c["axes"], "final_norm")
    g.op("MatMul", [hs, "lm_head.weight"], name="logits")

    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])]
    outs = [helper.make_tensor_value_info("logits", f, ["batch", "sequence", cfg.vocab])]
    for i in range(cfg.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f, ["batch", kvh, "past", d]))
            outs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", f, ["batch", kvh, "total", d]))
    return helper.make_graph(g.nodes, "llama", inputs, outs, initializer=weights + g.consts)


def build(folder: "str | os.PathLike[str]", cfg: LlamaConfig, *, seed: int = 0, name: str = "llama") -> Path:
    """Write ``folder/name.onnx`` and its weights ``folder/name.onnx.data``; return the model path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_name = f"{name}.onnx.data"
    rng = np.random.default_rng(seed)
    weights = []
    with open(folder / data_name, "wb") as handle:
        for wname, shape in cfg.weight_shapes():
            offset = handle.tell()
            _write_weight(handle, rng, shape, norm=len(shape) == 1)
            weights.append(_external(wname, shape, data_name, offset))
    model = helper.make_model(_graph(cfg, weights), opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9,
                              producer_name="tests.support.llama_onnx")
    path = folder / f"{name}.onnx"
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def feeds(cfg: LlamaConfig, ids: np.ndarray, past: "list[np.ndarray] | None" = None) -> dict[str, np.ndarray]:
    """Inputs for token ids [batch, seq] after ``past`` (present outputs of a previous call, or none)."""
    out: dict[str, np.ndarray] = {"input_ids": ids.astype(np.int64)}
    empty = np.zeros((ids.shape[0], cfg.kv_heads, 0, cfg.head_dim), np.float32)
    for i in range(cfg.layers):
        for k, kind in enumerate(("key", "value")):
            out[f"past_key_values.{i}.{kind}"] = empty if past is None else past[2 * i + k]
    return out


__all__ = ["LLAMA_1B", "LLAMA_TINY", "LlamaConfig", "build", "feeds"]
