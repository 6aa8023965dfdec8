"""A converted module reads its weights through descriptors on its own class
(``onnx2x/torch/attribute_reads.py``), and stays an ordinary nn.Module: reassigning, converting,
loading, deleting, parametrizing and copying weights behave as on any module, checked against
numpy's forward of the same graph."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from onnx2x.torch import convert
from onnx2x.torch.runtime.attributes import StoredAttribute as _StoredAttribute

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)
X = RNG.standard_normal((2, 4)).astype(np.float32)


def _model():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TP.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["n", 3])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture()
def gm():
    module = convert(_model(), fuse=False)  # weights stay parameters named after their initializers
    assert set(dict(module.named_parameters())) == {"w", "b"}
    return module


def _run(module, x: np.ndarray = X) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_weights_are_read_through_the_class_and_are_the_registered_tensors(gm) -> None:
    assert {k for k, v in vars(type(gm)).items() if isinstance(v, _StoredAttribute)} == {"w", "b"}
    assert gm.w is gm._parameters["w"] and gm.b is gm._parameters["b"]
    assert type(gm).__mro__[1] is torch.fx.GraphModule  # fx's class for this one instance, nothing shared
    assert not any(isinstance(v, _StoredAttribute) for v in vars(torch.fx.GraphModule).values())
    np.testing.assert_allclose(_run(gm), X @ W + B, rtol=1e-6, atol=1e-6)


def test_reassigned_and_loaded_weights_are_what_the_forward_uses(gm) -> None:
    w2 = RNG.standard_normal((4, 3)).astype(np.float32)
    gm.w = torch.nn.Parameter(torch.from_numpy(w2))
    np.testing.assert_allclose(_run(gm), X @ w2 + B, rtol=1e-6, atol=1e-6)
    b2 = RNG.standard_normal(3).astype(np.float32)
    gm.load_state_dict({"w": torch.from_numpy(W), "b": torch.from_numpy(b2)})
    np.testing.assert_allclose(_run(gm), X @ W + b2, rtol=1e-6, atol=1e-6)
    gm.to(torch.float64)
    assert gm.w.dtype == torch.float64
    np.testing.assert_allclose(_run(gm, X.astype(np.float64)), X.astype(np.float64) @ W + b2, rtol=1e-12)


def test_a_deleted_weight_is_gone_and_a_parametrized_one_is_the_parametrization(gm) -> None:
    class Doubled(torch.nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    torch.nn.utils.parametrize.register_parametrization(gm, "w", Doubled())
    np.testing.assert_allclose(_run(gm), X @ (2 * W) + B, rtol=1e-6, atol=1e-6)
    torch.nn.utils.parametrize.remove_parametrizations(gm, "w")
    np.testing.assert_allclose(_run(gm), X @ (2 * W) + B, rtol=1e-6, atol=1e-6)  # kept as the new value
    del gm.b
    assert not hasattr(gm, "b")
    with pytest.raises(AttributeError):
        gm.b
    gm.register_buffer("b", torch.zeros(3))  # the name comes back as a buffer
    np.testing.assert_allclose(_run(gm), X @ (2 * W), rtol=1e-6, atol=1e-6)


def test_copies_and_training_work_as_on_any_module(gm) -> None:
    twin = copy.deepcopy(gm)
    np.testing.assert_array_equal(_run(twin), _run(gm))
    assert twin.w is not gm.w and twin.w is twin._parameters["w"]
    trainable = convert(_model(), trainable=True)
    trainable.train()
    loss = trainable(torch.from_numpy(X)).square().sum()
    loss.backward()
    want = 2 * X.T @ (X @ W + B)  # d/dW of sum((XW + b)^2)
    np.testing.assert_allclose(trainable.w.grad.numpy(), want, rtol=1e-5, atol=1e-5)


def test_a_saved_model_reads_its_weights_through_its_own_class(gm, tmp_path) -> None:
    """The saved ``model.py`` carries the helper (it needs only torch) and ``load()`` runs it on the
    file's own classes; the loaded module computes the graph and takes a new weight as any module."""
    from onnx2x.torch import artifact

    _, source = artifact.save(gm, tmp_path / "affine.pt")
    text = source.read_text()
    assert "import onnx2x" not in text and "# --- what load() uses besides torch" in text
    loaded = artifact.load(tmp_path / "affine.pt")
    assert {k for k, v in vars(type(loaded)).items() if type(v).__name__ == "StoredAttribute"} == {"w", "b"}
    np.testing.assert_allclose(_run(loaded), X @ W + B, rtol=1e-6, atol=1e-6)
    loaded.b = torch.nn.Parameter(torch.zeros(3))
    np.testing.assert_allclose(_run(loaded), X @ W, rtol=1e-6, atol=1e-6)
