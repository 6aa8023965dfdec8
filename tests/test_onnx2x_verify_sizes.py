"""The sizes the default check draws for symbolic dimensions (onnx2x/torch/verify.py).

Each symbolic name gets a size of its own first, so that a module reading one dimension where the
graph reads another (the key length for the query length) is refused; models whose names are tied
without the graph saying so still get checked, at one size for all.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from common.errors import VerificationError
from onnx2x.torch.verify import SymbolicSizes, check_module, random_inputs, reference_outputs


def _attention_scores_model() -> onnx.ModelProto:
    """scores[b, m, n] = zeros of shape (len(q), len(k)) + bias: Q [b, m, 4], K [b, n, 4]."""
    shape_q = helper.make_node("Shape", ["q"], ["shape_q"], end=2)
    shape_k = helper.make_node("Shape", ["k"], ["shape_k"], start=1, end=2)
    target = helper.make_node("Concat", ["shape_q", "shape_k"], ["target"], axis=0)
    expand = helper.make_node("Expand", ["bias", "target"], ["scores"])
    graph = helper.make_graph(
        [shape_q, shape_k, target, expand], "scores",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["batch", "m", 4]),
         helper.make_tensor_value_info("k", TensorProto.FLOAT, ["batch", "n", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "m", "n"])],
        [helper.make_tensor("bias", TensorProto.FLOAT, [1, 1, 1], [0.5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class KeyLengthTakenFromQuery(torch.nn.Module):
    """A wrong translation of :func:`_attention_scores_model`: the key length read from Q."""

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.full((q.shape[0], q.shape[1], q.shape[1]), 0.5)


class Scores(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.full((q.shape[0], q.shape[1], k.shape[1]), 0.5)


def test_each_symbolic_name_gets_its_own_size():
    model = _attention_scores_model()
    q, k = random_inputs(model, symbolic=SymbolicSizes(2, 8, distinct=True))
    assert q.shape == (2, 8, 4) and k.shape == (2, 10, 4)  # one batch name, two lengths
    q, k = random_inputs(model, symbolic=SymbolicSizes(2, 8))
    assert q.shape == k.shape == (2, 8, 4)


def test_a_module_reading_the_wrong_dimension_is_refused():
    model = _attention_scores_model()
    reference = reference_outputs(model)
    assert [v.shape for v in reference.inputs.values()] == [(2, 8, 4), (2, 10, 4)]
    assert reference.expected[0].shape == (2, 8, 10)
    assert not check_module(Scores(), model).skipped
    with pytest.raises(VerificationError):
        check_module(KeyLengthTakenFromQuery(), model)


def _tied_batches_model() -> onnx.ModelProto:
    """Add of two inputs whose batch and length axes carry different names (as exporters that name
    each input's axes on their own write them): only equal sizes run."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "tied",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["unk__0", "unk__1", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["unk__2", "unk__3", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class AddModule(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def test_names_tied_outside_the_graph_are_checked_at_one_size():
    model = _tied_batches_model()
    reference = reference_outputs(model)
    assert [v.shape for v in reference.inputs.values()] == [(2, 8, 4), (2, 8, 4)]
    result = check_module(AddModule(), model)
    assert not result.skipped and result.max_abs_diff == 0.0


def test_given_arrays_fix_their_names_and_the_others_stay_distinct():
    model = _attention_scores_model()
    given = {"q": np.zeros((1, 5, 4), np.float32)}
    q, k = random_inputs(model, symbolic=SymbolicSizes(2, 8, distinct=True), given=given)
    assert q.shape == (1, 5, 4) and k.shape == (1, 8, 4)
