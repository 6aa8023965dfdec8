"""The roundtrip CLI: help, exit codes, table, markdown and JSON reports, the embedded demo."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from common.verify.inputs import random_inputs, specs_from_onnx
from common.verify.report import JSON_FIELDS, SCHEMA
from common.verify.runners import OnnxRuntimeRunner
from roundtrip.cli import build_parser, main
from tests.support.verify_models import REPO, small_cnn, wrong_converter


@pytest.fixture
def cnn_file(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), str(path))
    return path


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_explains_every_option_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "mxnet", "onnx"):
        assert command in text
        assert f"roundtrip {command}" in text  # an example line per subcommand
    for name, sub in _subparsers(build_parser()).items():
        assert "example" in (sub.description or ""), name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_python_dash_m_works():
    done = subprocess.run([sys.executable, "-m", "roundtrip", "onnx", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "--no-back-to-onnx" in done.stdout


def _expected_torch_error(model: onnx.ModelProto) -> dict[str, float]:
    """max |torch - onnxruntime| per output, computed here without the round-trip code."""
    from onnx2x.torch import convert

    inputs = random_inputs(specs_from_onnx(model), seed=0)
    ref = OnnxRuntimeRunner(model, optimize=False).run(inputs).outputs  # the round trip's reference setting
    with torch.no_grad():
        got = convert(model)(torch.from_numpy(inputs["x"]))
    return {name: float(np.abs(g.numpy().astype(np.float64) - ref[name]).max()) for name, g in zip(ref, got)}


def test_onnx_round_trip_reports(cnn_file, tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    code = main(["onnx", str(cnn_file), "--report", str(md), "--json", str(js)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK: every stage is within tolerance of onnx" in out
    data = json.loads(js.read_text())
    # schema
    assert data["schema"] == SCHEMA and data["version"] == 1
    assert set(JSON_FIELDS["report"]) <= set(data)
    assert [s["name"] for s in data["stages"]] == ["onnx", "torch", "onnx (from torch)"]
    for stage in data["stages"]:
        assert set(JSON_FIELDS["stage"]) <= set(stage)
        assert stage["ok"] is True
    for stage in data["stages"][1:]:
        assert [o["name"] for o in stage["outputs"]] == ["prob", "fc_out"]
        for o in stage["outputs"]:
            assert set(JSON_FIELDS["output"]) <= set(o)
            assert o["n_bad"] == 0 and o["ref_shape"] == o["cand_shape"] == [1, 5]
            assert (o["rtol"], o["atol"]) == (1e-4, 1e-5)
    assert data["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32", "source": "random (seed 0)"}]
    # figures: the torch stage's max abs error equals the one computed independently
    expected = _expected_torch_error(small_cnn())
    torch_stage = data["stages"][1]
    for o in torch_stage["outputs"]:
        assert o["max_abs"] == pytest.approx(expected[o["name"]], rel=1e-6, abs=1e-12)
    # markdown: one table row per (stage, output), with the same figures
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    table = [r for r in rows if r.split("|")[1].strip() in ("onnx", "torch", "onnx (from torch)")]
    assert len(table) == 6
    cells = [c.strip() for c in table[2].split("|")[1:-1]]
    assert cells[:3] == ["torch", "prob", "1x5"]
    assert cells[3] == f"{expected['prob']:.3g}" and cells[7] == "0/5" and cells[-1] == "ok"
    assert "**OK**" in md.read_text()


def _leaky_relu_ignoring_alpha(ctx):
    return ctx.call(torch.nn.functional.leaky_relu, ctx.input(0), 0.01)


def test_failed_stage_exits_3_and_names_the_node(cnn_file, tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    with wrong_converter("LeakyRelu", _leaky_relu_ignoring_alpha):
        code = main(["onnx", str(cnn_file), "--no-back-to-onnx", "--report", str(md), "--json", str(js)])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.err.strip().startswith("error:") and len(captured.err.strip().splitlines()) == 1
    assert "first divergent node: lrelu (LeakyRelu)" in captured.out
    data = json.loads(js.read_text())
    assert data["ok"] is False
    torch_stage = data["stages"][1]
    assert torch_stage["status"] == "DIFFERS" and torch_stage["locator"]["found"] is True
    div = torch_stage["locator"]["divergence"]
    assert (div["node"], div["op_type"], div["inputs_agree"]) == ("lrelu", "LeakyRelu", True)
    assert div["attributes"]["alpha"] == pytest.approx(0.2)
    text = md.read_text()
    assert "**FAILED**" in text and "## First divergent node" in text and "DIFFERS" in text


def test_user_inputs_and_tolerances(cnn_file, tmp_path, capsys):
    x = np.random.default_rng(9).uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    js = tmp_path / "r.json"
    code = main(["onnx", str(cnn_file), "--no-back-to-onnx", "--input", str(tmp_path / "in.npz"),
                 "--rtol", "1e-3", "--atol", "1e-4", "--json", str(js), "-q"])
    assert code == 0
    assert capsys.readouterr().out == ""  # -q: errors only
    data = json.loads(js.read_text())
    assert data["inputs"][0]["source"] == f"file {tmp_path / 'in.npz'}"
    assert data["tolerance"]["rtol"] == 1e-3
    assert {(o["rtol"], o["atol"]) for o in data["stages"][1]["outputs"]} == {(1e-3, 1e-4)}


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["onnx", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err
    assert main(["mxnet", str(tmp_path / "a-symbol.json"), str(tmp_path / "a.params")]) == 2


def test_missing_mxnet_shape_is_explained(tmp_path, capsys):
    from tests.support.verify_models import small_mxnet_net

    sym, params, _ = small_mxnet_net(tmp_path)
    assert main(["mxnet", str(sym), str(params)]) == 2
    assert "--input-shape data:" in capsys.readouterr().err


def test_demo_exits_0_within_1e5(tmp_path, capsys):
    js = tmp_path / "demo.json"
    code = main(["demo", "--json", str(js)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(js.read_text())
    assert [s["name"] for s in data["stages"]] == ["mxnet", "onnx", "torch"]
    for stage in data["stages"][1:]:
        assert stage["convert_seconds"] > 0 and stage["run_seconds"] > 0
        assert [o["name"] for o in stage["outputs"]] == ["prob_output", "box_output"]
        for o in stage["outputs"]:
            assert o["ok"] and o["max_abs"] <= 1e-5 and o["atol"] == 1e-5
    for word in ("mxnet", "onnx", "torch", "prob_output", "box_output", "max abs", "max rel", "convert s", "run s"):
        assert word in out
