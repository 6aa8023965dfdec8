"""The CLI's check computes onnxruntime's side on another thread while the model converts: same
numbers as the check computed afterwards, weights read from their folder whatever the working
directory, a conversion error stops it, and big models keep the one-copy-at-a-time order."""
from __future__ import annotations

import importlib
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.errors import ConversionFailure
from common.model_io import load_onnx
from common.verify.runners import OnnxRuntimeRunner
from onnx2x.cli import main
from onnx2x.torch import early_reference, verify

WIDTH = 64  # 16 KB weights: above common.weight_refs.INLINE_MAX_BYTES, so they stay in the file


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 8, "w1"),
             numpy_helper.from_array(rng.standard_normal((WIDTH, 10)).astype(np.float32) / 8, "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The early reference runs where there is a second core: make this machine count as having one."""
    monkeypatch.setattr(early_reference, "_cores", lambda: 2)


def test_reference_from_the_weights_folder_matches_onnxruntime_on_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_cores: None) -> None:
    path = tmp_path / "models" / "mlp.onnx"
    path.parent.mkdir()
    onnx.save(_mlp(), str(path))
    lazy = load_onnx(path, lazy=True)
    assert early_reference.worth_running_early(lazy)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # onnxruntime must not resolve the weights from the working directory
    got = early_reference.EarlyReference(lazy, seed=3).result()
    assert got.skip_reason == "" and got.expected is not None
    x = got.inputs["x"]
    assert x.shape == (2, WIDTH)  # the check's first symbolic sizes
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got.expected[0], session.run(None, {"x": x})[0], rtol=1e-6, atol=1e-7)
    # the same inputs as the check computed after the conversion draws
    after = verify.reference_outputs(onnx.load(str(path)), seed=3)
    np.testing.assert_array_equal(after.inputs["x"], x)


def test_a_cancelled_runner_refuses_to_run() -> None:
    runner = OnnxRuntimeRunner(_mlp(), optimize=False, threads=1)
    x = np.ones((2, WIDTH), np.float32)
    assert runner.run({"x": x}).outputs["y"].shape == (2, 10)
    runner.cancel()
    with pytest.raises(ConversionFailure, match="onnxruntime failed to run"):
        runner.run({"x": x})


def _early_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "onnx2x-early-reference"]


def test_cli_uses_the_early_reference_and_stops_it_on_a_conversion_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, two_cores: None) -> None:
    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))
    used: list[object] = []
    result = early_reference.EarlyReference.result

    def counted(self):
        used.append(self)
        return result(self)

    monkeypatch.setattr(early_reference.EarlyReference, "result", counted)
    assert main(["torch", str(src), "-o", str(tmp_path / "ok.pt")]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out and len(used) == 1
    assert not _early_threads()

    convert_module = importlib.import_module("onnx2x.torch.convert")  # the package exports a function of that name

    def broken(*args, **kwargs):
        raise ConversionFailure("injected failure", node="mm1", op_type="MatMul")

    monkeypatch.setattr(convert_module, "convert_prepared", broken)
    assert main(["torch", str(src), "-o", str(tmp_path / "bad.pt")]) == 3
    assert "injected failure" in capsys.readouterr().err
    assert not _early_threads() and len(used) == 1  # stopped and joined, never waited for
    assert not (tmp_path / "bad.pt").exists()


def test_big_weights_keep_the_check_after_the_conversion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, two_cores: None) -> None:
    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))
    assert early_reference.worth_running_early(load_onnx(src, lazy=True))
    monkeypatch.setattr(early_reference, "EARLY_MAX_WEIGHT_BYTES", 1024)
    assert not early_reference.worth_running_early(load_onnx(src, lazy=True))

    def never(*args, **kwargs):
        raise AssertionError("the early reference ran for a model over the limit")

    monkeypatch.setattr(early_reference.EarlyReference, "__init__", never)
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out


def test_one_core_keeps_the_check_after_the_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))
    monkeypatch.setattr(early_reference, "_cores", lambda: 1)
    assert not early_reference.worth_running_early(load_onnx(src, lazy=True))


def test_batch_workers_count_only_their_share_of_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-j N``: each worker runs the early reference only when its share of the cores (the
    machine's over the workers) leaves it a second one, not beside a sibling worker's conversion."""
    import argparse

    from common import batch
    from common.progress import Progress

    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))
    model = load_onnx(src, lazy=True)
    monkeypatch.setattr(batch.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(batch, "_core_share", None)
    assert batch.cores_for_this_process() == 4 and early_reference.worth_running_early(model)
    jobs = [batch.Job(f"m{i}.onnx", f"m{i}.pt", argparse.Namespace()) for i in range(4)]
    shares = {n: batch._Batch(lambda args: 0, jobs, n, quiet=True, verbose=False,
                              progress=Progress("", enabled=False))._core_share for n in (1, 2, 4)}
    assert shares == {1: 4, 2: 2, 4: 1}
    monkeypatch.setattr(batch, "_core_share", shares[4])  # what _init_worker sets in a worker
    assert not early_reference.worth_running_early(model)
    monkeypatch.setattr(batch, "_core_share", shares[2])
    assert early_reference.worth_running_early(model)


def test_a_failing_early_reference_leaves_the_check_to_the_usual_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, two_cores: None) -> None:
    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure on the early thread")

    monkeypatch.setattr(early_reference, "reference_outputs", broken)
    assert main(["torch", str(src), "-o", str(tmp_path / "net.pt")]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out
