"""Bad input to ``x2onnx mxnet``: one ``error:`` line naming file/node/op, exit 2 or 3, no output file."""
from __future__ import annotations

import re
import json
from pathlib import Path

import pytest

import mx2onnx_patches as patches
from tests.support.mxnet_ops import mx, rand, random_params
from x2onnx.cli import main

data = mx.sym.var("data")


def _save(tmp_path: Path, sym, params: dict, name: str = "net") -> tuple[Path, Path]:
    sym_path, params_path = tmp_path / f"{name}-symbol.json", tmp_path / f"{name}-0000.params"
    sym.save(str(sym_path))
    mx.nd.save(str(params_path), {f"arg:{k}": mx.nd.array(v) for k, v in params.items()})
    return sym_path, params_path


def _net():
    net = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv")
    net = mx.sym.Activation(net, act_type="relu", name="relu")
    return mx.sym.FullyConnected(net, num_hidden=3, name="fc")


def _run(capfd, *argv: str) -> tuple[int, list[str]]:
    code = main([*map(str, argv)])
    err = capfd.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.strip()]


def _one_error(lines: list[str]) -> str:
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, lines
    assert lines == errors, f"stderr has more than the error line: {lines}"
    return errors[0]


@pytest.fixture
def saved(tmp_path):
    sym = _net()
    return (*_save(tmp_path, sym, random_params(sym, {"data": rand(1, 3, 6, 6)})), tmp_path)


def _no_output(folder: Path) -> None:
    assert not list(folder.glob("*.onnx*")), list(folder.iterdir())
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def test_missing_symbol_file(capfd, tmp_path):
    out = tmp_path / "out.onnx"
    code, lines = _run(capfd, "mxnet", tmp_path / "nope-symbol.json", tmp_path / "nope-0000.params", "-o", out)
    assert code == 2
    assert _one_error(lines) == f"error: {tmp_path / 'nope-symbol.json'}: no such file"
    _no_output(tmp_path)


def test_missing_params_file_with_epoch(capfd, saved):
    sym_path, _, folder = saved
    code, lines = _run(capfd, "mxnet", folder / "net", "--epoch", "7", "--input-shape", "data:1,3,6,6",
                       "-o", folder / "out.onnx")
    assert code == 2
    assert _one_error(lines) == f"error: {folder / 'net-0007.params'}: no such file"
    _no_output(folder)


def test_json_that_is_not_an_mxnet_symbol(capfd, saved):
    _, params_path, folder = saved
    bogus = folder / "bogus-symbol.json"
    bogus.write_text(json.dumps({"layers": [{"type": "conv"}]}))
    code, lines = _run(capfd, "mxnet", bogus, params_path, "--input-shape", "data:1,3,6,6", "-o", folder / "o.onnx")
    assert code == 2
    line = _one_error(lines)
    assert line.startswith(f"error: {bogus}: not an MXNet symbol file")
    _no_output(folder)


def test_truncated_params(capfd, saved):
    sym_path, params_path, folder = saved
    truncated = folder / "cut-0000.params"
    truncated.write_bytes(params_path.read_bytes()[: params_path.stat().st_size // 2])
    code, lines = _run(capfd, "mxnet", sym_path, truncated, "--input-shape", "data:1,3,6,6", "-o", folder / "o.onnx")
    assert code == 2
    assert _one_error(lines).startswith(f"error: {truncated}: cannot read MXNet params (truncated")
    _no_output(folder)


def test_params_missing_a_weight(capfd, tmp_path):
    sym = _net()
    params = random_params(sym, {"data": rand(1, 3, 6, 6)})
    del params["conv_weight"]
    sym_path, params_path = _save(tmp_path, sym, params)
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "--input-shape", "data:1,3,6,6", "-o",
                       tmp_path / "o.onnx")
    assert code == 2
    assert _one_error(lines) == (f"error: {params_path}: params have no 'conv_weight', the weight of "
                                 f"Convolution 'conv'")
    _no_output(tmp_path)


def test_input_shape_of_the_wrong_rank_names_the_node(capfd, saved):
    sym_path, params_path, folder = saved
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "--input-shape", "data:1,3,6", "-o", folder / "o.onnx")
    assert code == 2
    line = _one_error(lines)
    assert line.startswith(f"error: {sym_path}: conv: input shape(s) data:1,3,6 do not fit the network")
    _no_output(folder)


def test_missing_input_shape_asks_for_it(capfd, saved):
    sym_path, params_path, folder = saved
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "-o", folder / "o.onnx")
    assert code == 2
    assert "--input-shape data:" in _one_error(lines)
    _no_output(folder)


def test_input_shape_for_an_unknown_input(capfd, saved):
    sym_path, params_path, folder = saved
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "--input-shape", "image:1,3,6,6", "-o",
                       folder / "o.onnx")
    assert code == 2
    assert "'image'" in _one_error(lines) and "data" in lines[0]
    _no_output(folder)


_NO_TRANSLATION_CANDIDATES = ("Correlation", "IdentityAttachKLSparseReg", "_contrib_count_sketch",
                              "SpatialTransformer", "_contrib_fft")


def _untranslated_op() -> str:
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    patches.apply()
    known = {op for table in MXNetGraph.registry_.values() for op in table}
    for op in _NO_TRANSLATION_CANDIDATES:
        if op not in known:
            return op
    pytest.fail("every candidate op has a translation now; add an untranslated one to the list")


def test_op_with_no_translation_exits_3_naming_node_and_op(capfd, tmp_path):
    op = _untranslated_op()
    if op == "Correlation":
        net = mx.sym.Correlation(data, data, kernel_size=1, max_displacement=1, pad_size=1, name="odd")
    elif op == "IdentityAttachKLSparseReg":
        net = mx.sym.IdentityAttachKLSparseReg(mx.sym.sigmoid(data), name="odd")
    elif op == "SpatialTransformer":
        loc = mx.sym.FullyConnected(data, num_hidden=6, name="loc")
        net = mx.sym.SpatialTransformer(data, loc, target_shape=(4, 4), transform_type="affine",
                                        sampler_type="bilinear", name="odd")
    else:
        net = getattr(mx.sym, op)(data, name="odd")
    sym = mx.sym.Activation(net, act_type="relu", name="after")
    sym_path, params_path = _save(tmp_path, sym, random_params(sym, {"data": rand(1, 2, 4, 4)}))
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "--input-shape", "data:1,2,4,4", "-o",
                       tmp_path / "o.onnx")
    assert code == 3
    line = _one_error(lines)
    assert line.startswith(f"error: {sym_path}: odd ({op}): unsupported op {op} at opset 13")
    _no_output(tmp_path)


def test_failed_verification_exits_3_naming_the_first_divergent_node(capfd, saved, monkeypatch):
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from onnx import helper

    sym_path, params_path, folder = saved
    patches.apply()

    def broken_relu(node, **kwargs):  # a wrong translation: Sigmoid where MXNet computes ReLU
        source = node["inputs"][0]
        tensor = kwargs["outputs_lookup"][source[0]][source[1]].name
        return [helper.make_node("Sigmoid", [tensor], [node["name"]], name=node["name"])]

    for version, table in MXNetGraph.registry_.items():
        if "Activation" in table:
            monkeypatch.setitem(table, "Activation", broken_relu)
    code, lines = _run(capfd, "mxnet", sym_path, params_path, "--input-shape", "data:1,3,6,6", "-o",
                       folder / "o.onnx", "--no-simplify")
    assert code == 3
    line = _one_error(lines)
    assert line.startswith(f"error: {sym_path}: relu (Activation): output fc (1, 3) differs from MXNet: ")
    assert re.search(r"first divergent node: relu\w* \(Sigmoid\), converted from MXNet node relu \(Activation\)", line)
    _no_output(folder)


def test_epoch_and_params_together_are_refused(capfd, saved):
    sym_path, params_path, folder = saved
    code, lines = _run(capfd, "mxnet", folder / "net", str(params_path), "--epoch", "0", "-o", folder / "o.onnx")
    assert code == 2 and "not both" in _one_error(lines)
    _no_output(folder)


def test_params_as_python_objects_errors_name_the_weight():
    from common.errors import ModelLoadError
    from x2onnx.mxnet import export

    sym = _net()
    params = {k: mx.nd.array(v) for k, v in random_params(sym, {"data": rand(1, 3, 6, 6)}).items()}
    params.pop("fc_bias")
    with pytest.raises(ModelLoadError, match="params have no 'fc_bias', the bias of FullyConnected 'fc'"):
        export(sym, params, {"data": (1, 3, 6, 6)}, verify=False, simplify=False)
