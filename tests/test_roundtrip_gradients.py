"""``roundtrip mxnet --check-gradients`` / ``--save-dir``: gradients compared with MXNet by parameter
name, disputes settled by finite differences of MXNet's forward, SGD steps in both frameworks, and the
saved PyTorch artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.verify.compare import compare_arrays
from common.verify.gradients import OK, SOURCE_WRONG, adjudicate, match_parameters
from common.verify.runners import MXNetRunner, load_mxnet_params, load_mxnet_symbol
from roundtrip.cli import main
from roundtrip.gradients import check_mxnet_gradients, sgd_steps, trainable_module
from roundtrip.pipeline import export_mxnet
from tests.support.verify_models import models_dir, write_checkpoint

MTCNN = models_dir() / "mxnet" / "mtcnn"
MTCNN_SHAPES = {"det1": (1, 3, 12, 12), "det2": (1, 3, 24, 24), "det3": (1, 3, 48, 48), "det4": (1, 15, 24, 24)}


def _mx():
    from mx2onnx_patches.mxnet_import import import_mxnet

    return import_mxnet()


def bn_net(folder: Path, seed: int = 0) -> tuple[Path, Path, tuple[int, ...]]:
    """data (4,3,8,8) -> conv -> BatchNorm -> relu -> max pool -> fc -> Dropout -> fc -> SoftmaxOutput
    (with its label): the loss head, Dropout and BatchNorm are what the gradient symbol rewrites."""
    mx = _mx()
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=4, name="conv1")
    x = mx.sym.BatchNorm(x, fix_gamma=False, momentum=0.9, name="bn1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool1")
    x = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=6, name="fc1")
    x = mx.sym.Dropout(x, p=0.5, name="drop1")
    x = mx.sym.FullyConnected(x, num_hidden=3, name="fc2")
    out = mx.sym.SoftmaxOutput(x, name="softmax")
    shape = (4, 3, 8, 8)
    return write_checkpoint(out, shape, folder, "bn", seed=seed, std=0.4, inputs=("data", "softmax_label")) + (shape,)


@pytest.fixture(scope="module")
def bn_files(tmp_path_factory):
    return bn_net(tmp_path_factory.mktemp("bn"))


def _load(sym_path: Path, params_path: Path):
    sym = load_mxnet_symbol(sym_path)
    args, aux = load_mxnet_params(params_path)
    return sym, args, aux


def _input(shape, seed=1) -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


def _mtcnn(name: str):
    if not (MTCNN / f"{name}-symbol.json").is_file():
        pytest.fail(f"MTCNN models not found under {MTCNN} (set X2ONNX_MODELS_DIR)")
    return MTCNN / f"{name}-symbol.json", MTCNN / f"{name}-0001.params"


# --- eval and train mode pass ----------------------------------------------------------------
def test_bn_net_gradients_agree_in_eval_and_train_mode(bn_files):
    sym_path, params_path, shape = bn_files
    sym, args, aux = _load(sym_path, params_path)
    model = export_mxnet(sym_path, params_path, {"data": shape})
    reports = check_mxnet_gradients(sym, args, aux, model, _input(shape))
    assert [r.mode for r in reports] == ["eval", "train"]
    for report in reports:
        assert report.ok, report.error()
        status = {e.name: e.status for e in report.entries}
        # every parameter and the input compared, by MXNet name, and all agree
        assert set(status) == {"conv1_weight", "conv1_bias", "bn1_gamma", "bn1_beta", "fc1_weight", "fc1_bias",
                               "fc2_weight", "fc2_bias", "data", "softmax_output"}  # and the forward's output
        assert set(status.values()) == {OK}, report.lines()
        # the comparison is real: gradients are of a sizeable scale, agreeing to float32 noise
        conv = next(e for e in report.entries if e.name == "conv1_weight").comparison
        assert conv.scale > 1e-3 and conv.max_rel < 1e-5
    # batch statistics change the gradients: train mode is not eval mode again
    eval_bn = next(e for e in reports[0].entries if e.name == "bn1_gamma").comparison
    train_bn = next(e for e in reports[1].entries if e.name == "bn1_gamma").comparison
    assert abs(eval_bn.scale - train_bn.scale) > 1e-3 * eval_bn.scale


@pytest.mark.parametrize("name", ["det1", "det2", "det3", "det4"])
def test_mtcnn_gradients_pass_in_eval_mode(name):
    sym_path, params_path = _mtcnn(name)
    shape = MTCNN_SHAPES[name]
    sym, args, aux = _load(sym_path, params_path)
    model = export_mxnet(sym_path, params_path, {"data": shape})
    (report,) = check_mxnet_gradients(sym, args, aux, model, _input(shape))
    assert report.mode == "eval"
    assert report.ok, report.error()
    compared = [e for e in report.entries if e.comparison is not None and e.kind != "output"]
    assert len(compared) == len(args) + 1  # every parameter (under its MXNet name) and the input
    assert all(e.status in (OK, SOURCE_WRONG) for e in report.entries)
    # only PReLU slopes are MXNet's mistakes, each settled by finite differences of MXNet's forward
    for e in report.entries:
        if e.status == SOURCE_WRONG:
            assert e.op == "LeakyReLU" and e.name.endswith("_gamma"), e
            assert e.finite_difference.supports == "candidate"


def test_det4_prelu_after_fully_connected_is_adjudicated_with_a_warning(tmp_path, capsys):
    import json

    sym_path, params_path = _mtcnn("det4")
    code = main(["mxnet", str(sym_path), str(params_path), "--input-shape", "data:1,15,24,24", "--check-gradients",
                 "--json", str(tmp_path / "r.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning = next(line for line in captured.err.splitlines() if "'prelu4_gamma'" in line)
    assert warning.startswith("warning: [eval] mxnet's gradient of parameter 'prelu4_gamma', node 'prelu4' "
                              "(LeakyReLU) is wrong")
    assert "finite differences of mxnet's forward (float64" in warning and "torch is right" in warning
    assert "gradients (eval mode): 74 compared with mxnet" in captured.out
    (gradients,) = json.loads((tmp_path / "r.json").read_text())["gradients"]
    entry = next(e for e in gradients["entries"] if e["name"] == "prelu4_gamma")
    assert gradients["ok"] and entry["status"] == SOURCE_WRONG and entry["op"] == "LeakyReLU"
    assert entry["finite_difference"]["supports"] == "candidate"


# --- a wrong backward is caught and named -----------------------------------------------------
class _ScaledBackward(torch.autograd.Function):
    """``fn``'s forward, its backward times 1.5: a converter with a wrong gradient."""

    @staticmethod
    def forward(ctx, fn, *args):
        ctx.fn = fn
        ctx.save_for_backward(*args)
        return fn(*args)

    @staticmethod
    def backward(ctx, grad):
        args = [a.detach().requires_grad_(a.requires_grad) for a in ctx.saved_tensors]
        with torch.enable_grad():
            out = ctx.fn(*args)
        grads = torch.autograd.grad(out, [a for a in args if a.requires_grad], grad * 1.5, allow_unused=True)
        it = iter(grads)
        return (None, *[next(it) if a.requires_grad else None for a in args])


def _scale_backward_of(gm, name_part: str) -> str:
    """Wrap the first call whose target's name contains ``name_part`` (``gemm``, ``conv2d``) so that
    its backward is 1.5 times too large."""
    import torch.fx as fx

    for node in gm.graph.nodes:
        if node.op == "call_function" and name_part in getattr(node.target, "__name__", ""):
            fn = node.target
            n_tensors = next((i for i, a in enumerate(node.args) if not isinstance(a, fx.Node)), len(node.args))
            tensor_args, rest = node.args[:n_tensors], node.args[n_tensors:]

            def wrapped(*args, _fn=fn, _n=len(tensor_args), _rest=rest, _kw=dict(node.kwargs)):
                return _ScaledBackward.apply(lambda *t: _fn(*t, *_rest, **_kw), *args[:_n])

            wrapped.__name__ = f"scaled_{name_part}"
            node.target = wrapped
            node.args = tuple(tensor_args)
            node.kwargs = {}
            gm.recompile()
            return node.name
    raise AssertionError(f"no {name_part} call in {gm.code}")


def test_wrong_backward_exits_3_naming_the_layer(bn_files, monkeypatch, capsys):
    import roundtrip.gradients as grads

    sym_path, params_path, shape = bn_files
    real = grads.trainable_module
    patched = []

    def wrong(*args, **kwargs):
        gm = real(*args, **kwargs)
        patched.append(_scale_backward_of(gm, "gemm"))  # the first Gemm: fc1
        return gm

    monkeypatch.setattr(grads, "trainable_module", wrong)
    code = main(["mxnet", str(sym_path), str(params_path), "--input-shape", "data:" + ",".join(map(str, shape)),
                 "--check-gradients"])
    captured = capsys.readouterr()
    assert patched
    assert code == 3
    error = captured.err.strip().splitlines()[-1]
    # fc1's weight is the first parameter (from the outputs) whose gradient is wrong; MXNet is right
    assert error.startswith("error: [eval] gradient of parameter 'fc1_weight', node 'fc1' (FullyConnected) differs")
    assert "finite differences of mxnet's forward" in error
    assert "| differs" not in captured.out
    lines = captured.out.splitlines()
    assert any(line.split()[:3] == ["differs", "param", "fc1_weight"] and "support mxnet" in line for line in lines)
    assert any(line.split()[:3] == ["ok", "output", "softmax_output"] for line in lines)  # the forward is right
    assert any(line.split()[:3] == ["ok", "param", "fc2_weight"] for line in lines)  # downstream: still right


def test_adjudicate_backs_the_side_finite_differences_measure():
    # loss = sum(a * x^2): gradient 2 a x; a candidate 1.5 times that is refuted, the truth backed
    a = np.array([1.0, -2.0, 0.5])
    x = np.array([0.3, 0.7, -1.1])
    truth = 2 * a * x
    assert adjudicate(lambda v: float(np.sum(a * v ** 2)), x, truth, 1.5 * truth).supports == "source"
    assert adjudicate(lambda v: float(np.sum(a * v ** 2)), x, 0.2 * truth, truth).supports == "candidate"


def test_match_parameters_by_name_then_by_values():
    source = {"w": np.arange(6.0).reshape(2, 3), "slope": np.array([0.1, 0.2, 0.3])}
    candidate = {"w": ("w", np.arange(6.0).reshape(2, 3)), "_v_1": ("_v_1", np.array([[[0.1]], [[0.2]], [[0.3]]])),
                 "extra": ("extra", np.zeros(2))}
    matches, unmatched = match_parameters(candidate, source)
    assert (matches["w"].attribute, matches["w"].how) == ("w", "name")
    assert (matches["slope"].attribute, matches["slope"].how) == ("_v_1", "values")
    assert unmatched == ["extra"]


# --- three SGD steps --------------------------------------------------------------------------
@pytest.mark.parametrize("train", [False, True])
def test_three_sgd_steps_match_mxnet(bn_files, train):
    sym_path, params_path, shape = bn_files
    sym, args, aux = _load(sym_path, params_path)
    model = export_mxnet(sym_path, params_path, {"data": shape})
    gm = trainable_module(model, input_shapes={"data": shape}, train=train)
    batches = [_input(shape, seed) for seed in (11, 12, 13)]
    mxnet_after, torch_after = sgd_steps(sym, args, aux, gm, batches, lr=0.01, train=train)
    # every weight by MXNet name; in train mode BatchNorm's moving statistics too
    assert set(mxnet_after) == set(args) | (set(aux) if train else set())
    moved = 0.0
    for name, value in mxnet_after.items():
        result = compare_arrays(value, torch_after[name], rtol=1e-5, atol=1e-6, name=name)
        assert result.ok, f"{name}: {result.problem()}"
        start = args[name] if name in args else aux[name]
        moved = max(moved, float(np.max(np.abs(value - start.asnumpy()))))
    assert moved > 1e-3  # the steps changed the weights by far more than the tolerance


# --- --save-dir: the PyTorch artifact ----------------------------------------------------------
@pytest.mark.parametrize("trainable", [False, True])
def test_save_dir_writes_an_artifact_that_matches_mxnet(tmp_path, capsys, trainable):
    from onnx2x.torch import artifact

    sym_path, params_path = _mtcnn("det1")
    out = tmp_path / "out"
    argv = ["mxnet", str(sym_path), str(params_path), "--input-shape", "data:1,3,12,12", "--save-dir", str(out)]
    code = main(argv + (["--trainable"] if trainable else []))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (out / "det1.pt").is_file() and (out / "det1.py").is_file()
    assert any(line.startswith("torch (saved)") and line.rstrip().endswith("ok") for line in captured.out.splitlines())
    module = artifact.load(out / "det1.pt")
    x = _input((1, 3, 12, 12), seed=5)
    reference = MXNetRunner(load_mxnet_symbol(sym_path), *load_mxnet_params(params_path)).run(x).outputs
    with torch.no_grad():
        got = module(torch.from_numpy(x["data"]))
    for ref, value in zip(reference.values(), got):
        assert compare_arrays(ref, value.numpy()).ok
    params = [p for p in module.parameters()]
    assert params and all(p.requires_grad for p in params) == trainable


# --- the README's migration section is true -----------------------------------------------------
def test_readme_migration_section_runs(tmp_path, monkeypatch, capsys):
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Migrating from MXNet to PyTorch", 1)[1].split("\n## ", 1)[0]
    command = section.split("```bash", 1)[1].split("```", 1)[0].strip()
    snippet = section.split("```python", 1)[1].split("```", 1)[0]
    sym_path, params_path = _mtcnn("det1")
    argv = shlex.split(command)
    assert argv[:2] == ["roundtrip", "mxnet"]
    argv = [str(sym_path) if a == "det1-symbol.json" else str(params_path) if a == "det1-0001.params" else a
            for a in argv[1:]]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0, capsys.readouterr().err
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - the README's own snippet
    model = scope["model"]
    reloaded = __import__("onnx2x.torch.artifact", fromlist=["load"]).load(tmp_path / "det1_torch" / "det1.pt")
    # the step changed every weight the loss reaches (the classifier's; conv4_2 is the box branch)
    before = dict(reloaded.named_parameters())
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    assert moved == reached and "conv1_weight" in moved and "conv4_2_weight" not in moved


def test_embedding_indices_get_no_input_gradient_and_the_rest_is_checked(tmp_path, capsys):
    mx = _mx()
    data = mx.sym.Variable("data")
    out = mx.sym.FullyConnected(mx.sym.Flatten(mx.sym.Embedding(data, input_dim=10, output_dim=4, name="emb")),
                                num_hidden=3, name="fc")
    shapes, _, _ = out.infer_shape(data=(2, 5))
    rng = np.random.default_rng(0)
    params = {f"arg:{n}": mx.nd.array(rng.normal(size=s).astype(np.float32))
              for n, s in zip(out.list_arguments(), shapes) if n != "data"}
    out.save(str(tmp_path / "emb-symbol.json"))
    mx.nd.save(str(tmp_path / "emb-0000.params"), params)
    code = main(["mxnet", str(tmp_path / "emb-symbol.json"), str(tmp_path / "emb-0000.params"),
                 "--input-shape", "data:2,5", "--check-gradients"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "3 compared with mxnet, 3 agree" in captured.out
    assert "note: input gradients not compared: MXNet computes none" in captured.out


def test_without_dropout_makes_train_mode_deterministic():
    from onnx import TensorProto, helper

    from onnx2x.torch import convert
    from roundtrip.gradients import without_dropout

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.random.default_rng(0).normal(size=16).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Dropout", ["h"], ["y"], ratio=0.5)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    gm = convert(model, trainable=True).train()
    x = torch.randn(8, 4)
    expected = x @ gm.get_parameter(next(n for n, _ in gm.named_parameters()))
    torch.manual_seed(0)
    assert not torch.allclose(gm(x), expected)  # Dropout active in train()
    assert without_dropout(gm) == 1
    assert gm.training
    assert torch.allclose(gm(x), expected) and torch.allclose(gm(x), expected)  # no mask, no 1/(1-p) scaling
