"""MXNet's fused RNN op -> ONNX RNN/LSTM/GRU (mx2onnx_patches/ops_rnn.py) against MXNet's forward."""
from __future__ import annotations

import pytest

from tests.support.mxnet_ops import check_export, mx, rand

SEQ, BATCH, INPUT, HIDDEN = 4, 2, 5, 3


def _rnn(mode: str, layers: int, bidirectional: bool, state_outputs: bool):
    data = mx.sym.var("data")
    state = mx.sym.var("state")
    args = dict(state_size=HIDDEN, num_layers=layers, mode=mode, bidirectional=bidirectional,
                state_outputs=state_outputs, name="rnn")
    if mode == "lstm":
        return mx.sym.RNN(data, mx.sym.var("params"), state, mx.sym.var("cell"), **args)
    return mx.sym.RNN(data, mx.sym.var("params"), state, **args)


def _inputs(mode: str, layers: int, bidirectional: bool) -> dict:
    states = layers * (2 if bidirectional else 1)
    inputs = {"data": rand(SEQ, BATCH, INPUT), "state": rand(states, BATCH, HIDDEN, seed=2)}
    if mode == "lstm":
        inputs["cell"] = rand(states, BATCH, HIDDEN, seed=3)
    return inputs


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (3, False), (2, True)])
def test_rnn_without_state_outputs(mode, layers, bidirectional):
    sym = _rnn(mode, layers, bidirectional, state_outputs=False)
    check_export(sym, _inputs(mode, layers, bidirectional), atol=1e-5)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_rnn_with_state_outputs(mode):
    sym = _rnn(mode, 2, True, state_outputs=True)
    check_export(sym, _inputs(mode, 2, True), atol=1e-5)


def test_rnn_state_output_feeding_later_nodes():
    """The final hidden state (output 1) wired by index into a consumer."""
    rnn = _rnn("gru", 2, False, state_outputs=True)
    sym = mx.sym.broadcast_add(mx.sym.sum(rnn[0], axis=0), 2 * mx.sym.sum(rnn[1], axis=0), name="y")
    check_export(sym, _inputs("gru", 2, False), atol=1e-5)


@pytest.mark.parametrize("opset", [14, 18])
def test_rnn_valid_at_newer_opsets(opset):
    sym = _rnn("lstm", 2, True, state_outputs=True)
    check_export(sym, _inputs("lstm", 2, True), atol=1e-5, opset=opset)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_rnn_with_computed_parameter_vector(mode):
    """Gluon packs the vector in the graph (``_rnn_param_concat``); blocks are then sliced in ONNX."""
    data, state = mx.sym.var("data"), mx.sym.var("state")
    packed = mx.sym.concat(mx.sym.var("p_first"), mx.sym.var("p_rest"), dim=0, name="packed")
    extra = [mx.sym.var("cell")] if mode == "lstm" else []
    sym = mx.sym.RNN(data, packed, state, *extra, state_size=HIDDEN, num_layers=2, mode=mode,
                     bidirectional=True, name="rnn")
    gates = 4 if mode == "lstm" else 3
    total = sum(2 * gates * HIDDEN * (n_in + HIDDEN + 2) for n_in in (INPUT, 2 * HIDDEN))
    params = {"p_first": rand(10, seed=5), "p_rest": rand(total - 10, seed=6)}
    check_export(sym, _inputs(mode, 2, True), params=params, atol=1e-5)
