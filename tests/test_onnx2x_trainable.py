"""Trainable conversion (``convert(model, trainable=True)``, ``onnx2x torch --trainable``).

The module must match onnxruntime in ``eval()``; in ``train()`` BatchNormalization's running
statistics follow ONNX's definition (checked against numpy), Dropout drops at the node's ratio,
every weight is a parameter that learns; the saved artifact behaves the same; and the default
conversion (folded, fused, frozen) is unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2x.cli import main
from onnx2x.torch import artifact, convert
from onnx2x.torch.naming import onnx_initializer

C, H, W, CLASSES = 4, 6, 6, 5
BN = {"bn1": (0.9, 1e-5), "bn2": (0.7, 1e-3)}  # name: (ONNX momentum, epsilon); bn1 has the default momentum


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a thread pool only adds waiting (30 SGD steps: 9 s on two busy
    cores, 0.15 s on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _cnn(opset: int = 13, ratio: float = 0.3) -> onnx.ModelProto:
    """Conv -> BN(momentum 0.9) -> Relu -> BN(momentum 0.7) -> Dropout -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [_init("conv_w", rng.standard_normal((C, 3, 3, 3)) * 0.3), _init("conv_b", rng.standard_normal(C) * 0.1),
             _init("fc_w", rng.standard_normal((CLASSES, C * H * W)) * 0.1),
             _init("fc_b", rng.standard_normal(CLASSES) * 0.1)]
    for bn in BN:
        inits += [_init(f"{bn}_gamma", rng.uniform(0.5, 1.5, C)), _init(f"{bn}_beta", rng.standard_normal(C) * 0.1),
                  _init(f"{bn}_moving_mean", rng.standard_normal(C) * 0.1),
                  _init(f"{bn}_moving_var", rng.uniform(0.5, 1.5, C))]
    bn_nodes = [helper.make_node("BatchNormalization", [src, f"{bn}_gamma", f"{bn}_beta", f"{bn}_moving_mean",
                                                        f"{bn}_moving_var"], [dst], name=bn,
                                 epsilon=BN[bn][1], **({} if BN[bn][0] == 0.9 else {"momentum": BN[bn][0]}))
                for bn, src, dst in (("bn1", "c1", "b1"), ("bn2", "r1", "b2"))]
    if opset >= 12:
        inits.append(_init("ratio", np.array(ratio)))
        drop = helper.make_node("Dropout", ["b2", "ratio"], ["d"], name="drop")
    else:
        drop = helper.make_node("Dropout", ["b2"], ["d"], name="drop", ratio=ratio)
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
             bn_nodes[0], helper.make_node("Relu", ["b1"], ["r1"]), bn_nodes[1], drop,
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def _x(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, H, W)).astype(np.float32))


def _ort(model: onnx.ModelProto, x: np.ndarray, outputs: tuple[str, ...] = ("y",)) -> list[np.ndarray]:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in outputs if o not in known)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(list(outputs), {"x": x})


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _expected_running_stats(model: onnx.ModelProto, x: torch.Tensor) -> dict[str, np.ndarray]:
    """ONNX's training-mode BatchNormalization in numpy (population variance; running = running *
    momentum + batch * (1 - momentum)), fed the convolution's output from onnxruntime."""
    p = _inits(model)
    (h,) = _ort(model, x.numpy(), ("c1",))
    h = h.astype(np.float64)
    out = {}
    for bn, (momentum, eps) in BN.items():
        mean, var = h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3))
        out[f"{bn}_moving_mean"] = p[f"{bn}_moving_mean"] * momentum + mean * (1 - momentum)
        out[f"{bn}_moving_var"] = p[f"{bn}_moving_var"] * momentum + var * (1 - momentum)
        view = (1, C, 1, 1)
        h = (h - mean.reshape(view)) / np.sqrt(var.reshape(view) + eps) * p[f"{bn}_gamma"].reshape(view) \
            + p[f"{bn}_beta"].reshape(view)
        if bn == "bn1":
            h = np.maximum(h, 0.0)
    return out


def _check_trainable(net: torch.nn.Module, model: onnx.ModelProto) -> None:
    """eval() == onnxruntime; one train() forward updates the statistics as ONNX defines; every
    parameter requires and receives a gradient; eval() is deterministic again afterwards."""
    x = _x()
    params = dict(net.named_parameters())
    assert set(params) == {"conv_w", "conv_b", "fc_w", "fc_b", "bn1_gamma", "bn1_beta", "bn2_gamma", "bn2_beta"}
    assert all(p.requires_grad for p in params.values())
    assert set(dict(net.named_buffers())) == {f"{bn}_moving_{s}" for bn in BN for s in ("mean", "var")}
    assert not net.training and net.onnx2x_trainable is True
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), _ort(model, x.numpy())[0], rtol=1e-4, atol=1e-5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net(x)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "eval() changed a buffer"

    net.train()
    torch.manual_seed(0)
    loss = net(x).square().mean()
    loss.backward()
    expected = _expected_running_stats(model, x)
    for name, value in expected.items():
        np.testing.assert_allclose(net.get_buffer(name).numpy(), value, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} received no gradient"
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("opset", [9, 13, 15])
def test_trainable_cnn_matches_onnxruntime_and_onnx_training_semantics(opset: int) -> None:
    model = _cnn(opset)
    gm = convert(model, trainable=True)
    assert gm.onnx_param_names == {k: k for k in (*dict(gm.named_parameters()), *dict(gm.named_buffers()))}
    _check_trainable(gm, model)


def test_saved_trainable_artifact_behaves_the_same(tmp_path: Path) -> None:
    model = _cnn()
    weights, source = artifact.save(convert(model, trainable=True), tmp_path / "net.pt")
    state = torch.load(weights, weights_only=True)
    assert {"bn1_moving_mean", "bn2_moving_var", "bn1_gamma", "conv_w"} <= set(state)
    net = artifact.load(source)
    assert "torch.nn.functional.dropout" in source.read_text()
    _check_trainable(net, model)


def _dropout_model(opset: int, ratio: float, mask: bool = False) -> onnx.ModelProto:
    outs = ["y", "mask"] if mask else ["y"]
    if opset >= 12:
        node = helper.make_node("Dropout", ["x", "r"], outs)
        inits = [_init("r", np.array(ratio))]
    else:
        node = helper.make_node("Dropout", ["x"], outs, ratio=ratio)
        inits = []
    vi = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [200, 500])]
    if mask:
        vi.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [200, 500]))
    graph = helper.make_graph([node], "drop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [200, 500])],
                              vi, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset,mask", [(10, False), (13, False), (13, True)])
def test_dropout_drops_at_its_ratio_in_train_only(opset: int, mask: bool) -> None:
    ratio = 0.3
    gm = convert(_dropout_model(opset, ratio, mask), trainable=True)
    x = torch.ones(200, 500)
    out = gm(x)
    y = out[0] if mask else out
    torch.testing.assert_close(y, x, rtol=0, atol=0)  # eval(): identity
    gm.train()
    torch.manual_seed(0)
    out = gm(x)
    y = out[0] if mask else out
    zero = (y == 0).float().mean().item()
    assert abs(zero - ratio) < 0.01, zero
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - ratio)))
    if mask:
        torch.testing.assert_close(out[1], y != 0)


def test_weights_are_not_folded_into_new_constants() -> None:
    """A weight reshaped and transposed before use stays the parameter (and learns); the default
    conversion folds that arithmetic into one unnamed constant."""
    w = np.random.default_rng(0).standard_normal(12).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["w2"]),
             helper.make_node("Transpose", ["w2"], ["wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [_init("w", w), numpy_helper.from_array(np.array([3, 4], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32))
    gm = convert(model, trainable=True)
    assert [n for n, _ in gm.named_parameters()] == ["w"] and gm.w.requires_grad
    gm(x).sum().backward()
    np.testing.assert_allclose(gm.w.grad.numpy(), np.tile(x.sum(0).numpy(), 3), rtol=1e-5)
    np.testing.assert_allclose(gm(x).detach().numpy(), x.numpy() @ w.reshape(3, 4).T, rtol=1e-5)
    default = convert(model)  # folded: F.linear(x, w.reshape(3, 4)), the weight stored under w's name
    assert tuple(default.w.shape) == (3, 4) and not default.w.requires_grad
    np.testing.assert_array_equal(onnx_initializer(default, "w").numpy(), w)


def test_fine_tuning_reduces_the_loss() -> None:
    """30 seeded SGD steps on the converted module fit a toy classification task."""
    torch.manual_seed(0)
    gm = convert(_cnn(ratio=0.1), trainable=True)
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((64, 3, H, W)).astype(np.float32))
    teacher = torch.from_numpy(rng.standard_normal((3 * H * W, CLASSES)).astype(np.float32))
    labels = (x.flatten(1) @ teacher).argmax(1)

    def eval_loss() -> float:
        gm.eval()
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(gm(x), labels).item()

    initial = eval_loss()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):
        gm.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(gm(x), labels).backward()
        opt.step()
    final = eval_loss()
    assert final < 0.5 * initial, (initial, final)


def test_default_conversion_is_unchanged() -> None:
    """Without trainable: frozen parameters, BatchNormalization folded away, Dropout gone."""
    model = _cnn()
    gm = convert(model)
    assert gm.onnx2x_trainable is False
    assert not any(p.requires_grad for p in gm.parameters())
    names = set(gm.state_dict())
    assert not names & {"bn1_moving_mean", "bn1_moving_var", "bn2_moving_mean", "bn1_gamma"}
    assert "batch_norm" not in gm.code and "dropout" not in gm.code
    x = _x()
    with torch.no_grad():
        np.testing.assert_allclose(gm(x).numpy(), _ort(model, x.numpy())[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="trainable"):
        convert(model, trainable=True, fuse=True)


def test_cli_trainable_writes_a_module_that_trains(tmp_path: Path) -> None:
    model = _cnn()
    src = tmp_path / "cnn.onnx"
    onnx.save(model, str(src))
    assert main(["torch", str(src), "--trainable", "-q", "-o", str(tmp_path / "out" / "net.pt")]) == 0
    net = artifact.load(tmp_path / "out" / "net.pt")
    assert net.onnx2x_trainable is True and all(p.requires_grad for p in net.parameters())
    net.train()
    net(_x())
    assert not torch.equal(net.bn1_moving_mean, torch.tensor(_inits(model)["bn1_moving_mean"]))


def test_weight_read_inside_an_if_branch_learns() -> None:
    """A branch reads the outer weight as an argument (not a copy of its own), so gradients reach it."""
    w = np.array([1.0, 2.0, 3.0], np.float32)
    branch = {k: helper.make_graph([helper.make_node(op, ["x", "w"], [k])], k, [],
                                   [helper.make_tensor_value_info(k, TensorProto.FLOAT, [3])])
              for k, op in (("then", "Mul"), ("else", "Add"))}
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch["then"], else_branch=branch["else"])], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [_init("w", w)])
    gm = convert(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), trainable=True)
    assert [n for n, _ in gm.named_parameters()] == ["w"]
    x = torch.tensor([0.5, -1.0, 2.0])
    for cond, expected_y, expected_grad in ((True, x.numpy() * w, x.numpy()), (False, x.numpy() + w, np.ones(3))):
        gm.zero_grad()
        y = gm(torch.tensor(cond), x)
        y.sum().backward()
        np.testing.assert_allclose(y.detach().numpy(), expected_y)
        np.testing.assert_allclose(gm.w.grad.numpy(), expected_grad)


def test_batch_norm_trains_as_mxnet_does() -> None:
    """The reference the migration targets: MXNet's BatchNorm in training (output, and moving
    statistics with momentum 0.8 from the population variance), against the converted ONNX node."""
    from tests.support.mxnet_ops import mx

    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    p = {"g": rng.uniform(0.5, 1.5, 3), "b": rng.standard_normal(3), "m": rng.standard_normal(3),
         "v": rng.uniform(0.5, 1.5, 3)}
    p = {k: v.astype(np.float32) for k, v in p.items()}
    sym = mx.sym.BatchNorm(mx.sym.var("data"), momentum=0.8, eps=1e-3, fix_gamma=False, name="bn")
    ex = sym.simple_bind(mx.cpu(), data=x.shape, grad_req="write")
    ex.arg_dict["data"][:] = x
    for mx_name, key in (("bn_gamma", "g"), ("bn_beta", "b")):
        ex.arg_dict[mx_name][:] = p[key]
    for mx_name, key in (("bn_moving_mean", "m"), ("bn_moving_var", "v")):
        ex.aux_dict[mx_name][:] = p[key]
    ex.forward(is_train=True)
    ex.backward(mx.nd.ones(x.shape))  # MXNet updates its moving statistics in backward
    mx.nd.waitall()

    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], momentum=0.8, epsilon=1e-3)
    graph = helper.make_graph([node], "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3, 5, 5])],
                              [_init(k, v) for k, v in p.items()])
    gm = convert(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), trainable=True)
    gm.train()
    y = gm(torch.from_numpy(x))
    np.testing.assert_allclose(y.detach().numpy(), ex.outputs[0].asnumpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gm.m.numpy(), ex.aux_dict["bn_moving_mean"].asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gm.v.numpy(), ex.aux_dict["bn_moving_var"].asnumpy(), rtol=1e-5, atol=1e-6)


def _torch_net() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, bias=False), torch.nn.BatchNorm2d(6),
                               torch.nn.ReLU(), torch.nn.Conv2d(6, 6, 3, stride=2), torch.nn.BatchNorm2d(6, momentum=0.3),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 81, 4))


def _through_onnx(net: torch.nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    import io

    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (x,), buf, dynamo=False, do_constant_folding=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    return onnx.load_from_string(buf.getvalue())


def test_pytorch_model_through_onnx_trains_like_the_original() -> None:
    """torch -> ONNX (eval export) -> trainable module: in train() the same outputs, gradients and
    running means as the original torch module (running variances differ on purpose: population
    variance here, torch's unbiased one there)."""
    torch.manual_seed(0)
    net = _torch_net()
    for bn in (net[1], net[4]):  # distinct values: the exporter merges equal initializers
        for t, lo, hi in ((bn.running_mean, -0.3, 0.3), (bn.running_var, 0.5, 1.5), (bn.weight, 0.5, 1.5),
                          (bn.bias, -0.3, 0.3)):
            t.data.uniform_(lo, hi)
    x = torch.randn(5, 3, 20, 20)
    gm = convert(_through_onnx(net, x), trainable=True)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=1e-5, atol=1e-5)
    net.train()
    gm.train()
    y_ref, y = net(x), gm(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    ref_params, ref_buffers = dict(net.named_parameters()), dict(net.named_buffers())
    for attr, onnx_name in gm.onnx_param_names.items():
        if onnx_name in ref_params:
            ref = ref_params[onnx_name].grad
            torch.testing.assert_close(getattr(gm, attr).grad, ref, rtol=1e-4, atol=max(1e-5, 1e-4 * float(ref.abs().max())))
        elif onnx_name.endswith("running_mean"):
            torch.testing.assert_close(getattr(gm, attr), ref_buffers[onnx_name], rtol=1e-5, atol=1e-6)
    assert {v for v in gm.onnx_param_names.values() if v in ref_params} == set(ref_params)


@pytest.mark.parametrize("simplify", [True, False])
def test_merged_initializers_keep_private_running_statistics(simplify: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Fresh BatchNorm layers exported in eval mode share one tensor of zeros (bias, running mean)
    and one of ones (weight, running variance), through Identity nodes (which onnx-simplifier
    removes): each layer still gets its own statistics, the update changes no parameter, and the
    tie that remains between the layers' weights is named."""
    torch.manual_seed(0)
    net = _torch_net()
    x = torch.randn(5, 3, 20, 20)
    model = _through_onnx(net, x)
    merged = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
    assert merged["1.running_mean"] == merged["4.bias"] == "1.bias"  # what the exporter does
    with caplog.at_level("WARNING", logger="onnx2x.torch.convert"):
        gm = convert(model, trainable=True, simplify=simplify)
    assert "read by several nodes train as one tensor each: 1.bias, 1.weight" in caplog.text
    params_before = {k: v.detach().clone() for k, v in gm.named_parameters()}
    assert set(params_before) == {"_0_weight", "_1_weight", "_1_bias", "_3_weight", "_3_bias", "_7_weight", "_7_bias"}
    net.train()
    gm.train()
    with torch.no_grad():
        net(x)
        gm(x)
    means = [v for k, v in gm.named_buffers() if k.endswith("running_mean")]
    assert len(means) == 2
    if not simplify:  # the statistics keep the names the exporter gave them
        assert {gm.onnx_param_names[k] for k, _ in gm.named_buffers()} == {
            f"{i}.running_{s}" for i in (1, 4) for s in ("mean", "var")}
    for got, bn in zip(means, (net[1], net[4])):
        torch.testing.assert_close(got, bn.running_mean, rtol=1e-5, atol=1e-6)
    for k, v in gm.named_parameters():
        torch.testing.assert_close(v, params_before[k], rtol=0, atol=0)
