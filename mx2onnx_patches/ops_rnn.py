"""MXNet's fused ``RNN`` op (rnn_relu, rnn_tanh, lstm, gru; any depth; uni- or bidirectional).

The stock translation refused ``state_outputs=False`` (the usual inference form), handled only
one or two layers, and sliced a two-layer net's parameters as if the input size equalled the
state size. Here every layer becomes one ONNX RNN/LSTM/GRU node whose W, R and B are cut from
MXNet's packed parameter vector at static offsets and reordered to ONNX's gate order.

MXNet's packed layout (``rnn-inl.h``, and gluon's ``_rnn_param_concat``): first all weights, for
each layer, for each direction, ``W_i2h`` (G*H x in) then ``W_h2h`` (G*H x H); then all biases in
the same order, ``b_i2h`` (G*H) then ``b_h2h`` (G*H). Gate order: LSTM i, f, g, o (ONNX i, o, f,
c); GRU r, z, n (ONNX z, r, h, with ``linear_before_reset=1`` as in cuDNN's GRU).
"""
from __future__ import annotations

import numpy as np

from .ops_common import Emitter
from .translations import translation

_GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
# for each ONNX gate position, the MXNet gate it comes from
_ONNX_FROM_MXNET = {"rnn_relu": [0], "rnn_tanh": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_ONNX_OP = {"rnn_relu": "RNN", "rnn_tanh": "RNN", "lstm": "LSTM", "gru": "GRU"}


class _PackedParams:
    """Reads blocks of MXNet's flat parameter vector in the graph (Slice, Reshape, Gather).

    Also when its value is known: the vector is then an initializer under its MXNet name, which
    the graph keeps reading (blocks cut at export would drop the name from the model, see
    :mod:`common.simplify`); runtimes fold the slicing when they load the model.
    """

    def __init__(self, e: Emitter) -> None:
        self.e = e
        self.name = e.inputs[1]

    def block(self, offset: int, rows: int, cols: int, row_order: np.ndarray) -> str:
        """``param[offset : offset + rows*cols]`` as a (rows, cols) matrix, rows reordered."""
        e = self.e
        flat = e.slice(self.name, [offset], [offset + rows * cols], [0])
        matrix = e.op("Reshape", [flat, e.ints([rows, cols], "rnn_shape")])
        if np.array_equal(row_order, np.arange(rows)):
            return matrix
        return e.op("Gather", [matrix, e.ints(row_order, "rnn_rows")], axis=0)


def _row_order(mode: str, hidden: int) -> np.ndarray:
    return np.concatenate([np.arange(g * hidden, (g + 1) * hidden) for g in _ONNX_FROM_MXNET[mode]])


def _stack(e: Emitter, tensors: list[str]) -> str:
    """Stack same-shaped tensors along a new leading axis (ONNX's num_directions)."""
    expanded = [e.unsqueeze(t, [0]) for t in tensors]
    return expanded[0] if len(expanded) == 1 else e.op("Concat", expanded, axis=0)


@translation("RNN", since=12)
def convert_rnn(node, **kwargs):
    e = Emitter(node, kwargs)
    mode = e.attr_str("mode", None)
    if mode not in _GATES:
        raise e.fail(f"mode={mode} is not supported")
    if e.attr_bool("use_sequence_length", False):
        raise e.fail("use_sequence_length=True is not supported (MXNet runs it only with cuDNN)")
    if e.has("projection_size"):
        raise e.fail("projection_size is not supported")
    if e.has("lstm_state_clip_min") or e.has("lstm_state_clip_max"):
        raise e.fail("lstm_state_clip_min/max are not supported (ONNX's clip acts on gate inputs)")
    hidden = e.attr_int("state_size", None)
    layers = e.attr_int("num_layers", None)
    if not hidden or not layers:
        raise e.fail("RNN needs state_size and num_layers")
    directions = 2 if e.attr_bool("bidirectional", False) else 1
    state_outputs = e.attr_bool("state_outputs", False)
    gates = _GATES[mode]
    rows = gates * hidden
    input_size = e.need_input_shape(0)[2]
    order = _row_order(mode, hidden)
    params = _PackedParams(e)

    # offsets of every (layer, direction) block in the packed vector
    weight_offsets, offset = [], 0
    for layer in range(layers):
        layer_in = input_size if layer == 0 else hidden * directions
        for _ in range(directions):
            weight_offsets.append((offset, layer_in))
            offset += rows * layer_in + rows * hidden
    bias_offsets = []
    for _ in range(layers * directions):
        bias_offsets.append(offset)
        offset += 2 * rows
    packed = e.weight(1)
    if packed is not None and packed.size != offset:
        raise e.fail(f"parameter vector has {packed.size} values, {mode} with these sizes needs {offset}")

    data = e.inputs[0]
    state = e.inputs[2] if len(e.inputs) > 2 else None
    cell = e.inputs[3] if mode == "lstm" and len(e.inputs) > 3 else None
    if state is None or (mode == "lstm" and cell is None):
        raise e.fail("RNN needs its initial state inputs")
    onnx_op = _ONNX_OP[mode]
    extra = {}
    if onnx_op == "RNN":
        extra["activations"] = ["Relu" if mode == "rnn_relu" else "Tanh"] * directions
    if onnx_op == "GRU":
        extra["linear_before_reset"] = 1
    direction = "bidirectional" if directions == 2 else "forward"

    layer_input = data
    final_h, final_c = [], []
    for layer in range(layers):
        w_list, r_list, b_list = [], [], []
        for d in range(directions):
            k = layer * directions + d
            w_off, layer_in = weight_offsets[k]
            w_list.append(params.block(w_off, rows, layer_in, order))
            r_list.append(params.block(w_off + rows * layer_in, rows, hidden, order))
            b_i2h = params.block(bias_offsets[k], rows, 1, order)
            b_h2h = params.block(bias_offsets[k] + rows, rows, 1, order)
            b_list.append(e.op("Reshape", [e.op("Concat", [b_i2h, b_h2h], axis=0), e.ints([-1], "flat")]))
        first, last = layer * directions, (layer + 1) * directions
        h0 = e.slice(state, [first], [last], [0])
        inputs = [layer_input, _stack(e, w_list), _stack(e, r_list), _stack(e, b_list), "", h0]
        n_out = 2
        if mode == "lstm":
            inputs.append(e.slice(cell, [first], [last], [0]))
            n_out = 3
        outs = e.op(onnx_op, inputs, n_out=n_out, hidden_size=hidden, direction=direction, **extra)
        y, y_h = outs[0], outs[1]
        final_h.append(y_h)
        if mode == "lstm":
            final_c.append(outs[2])
        # (T, D, N, H) -> (T, N, D*H)
        if directions == 1:
            layer_input = e.squeeze(y, [1])
        else:
            layer_input = e.op("Reshape", [e.op("Transpose", [y], perm=[0, 2, 1, 3]), e.ints([0, 0, -1], "tnc")])

    produced = 1 + ((2 if mode == "lstm" else 1) if state_outputs else 0)
    names = e.output_names(produced)
    e.op("Identity", [layer_input], names[0])
    if state_outputs and len(names) > 1:
        e.op("Concat", final_h, names[1], axis=0) if len(final_h) > 1 else e.op("Identity", final_h, names[1])
        if mode == "lstm" and len(names) > 2:
            e.op("Concat", final_c, names[2], axis=0) if len(final_c) > 1 else e.op("Identity", final_c, names[2])
    return e.done()
