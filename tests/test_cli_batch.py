"""Several inputs in one command (``-j N`` worker processes): isolation, identical outputs, progress.

Batch runs start worker processes (``spawn``) that import torch or MXNet: each costs seconds, so
every batch test converts several small models in one run.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from common import batch
from common.errors import ConversionError
from onnx2x.cli import main as onnx2x_main
from tests.support import batch_jobs

REPO = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, to see what a person would see."""

    def isatty(self) -> bool:
        return True


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# --- the runner alone, with cheap jobs ---------------------------------------------------------------
def _job(tmp: Path, name: str, kind: str, **extra: object) -> batch.Job:
    out = tmp / "out" / f"{name}.txt"
    args = argparse.Namespace(kind=kind, label=name, output=str(out), text=f"content of {name}", quiet=False,
                              verbose=False, debug=False, **extra)
    return batch.Job(label=name, output=str(out), args=args)


def test_worst_code_orders_failures_by_seriousness() -> None:
    assert batch.worst_code([]) == 0
    assert batch.worst_code([0, 0]) == 0
    assert batch.worst_code([0, 2, 0]) == 2
    assert batch.worst_code([2, 3, 0]) == 3
    assert batch.worst_code([3, 1, 2]) == 1  # a crash or bug is worse than a model that differs
    assert batch.worst_code([1, 130]) == 130


@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_counts_its_share_of_the_cores(tmp_path: Path, workers: int) -> None:
    """What the CLI's early reference asks before it starts beside the conversion."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = [_job(tmp_path, name, "cores") for name in "ab"]
    assert batch.run_jobs(batch_jobs.handler, jobs, workers=workers, quiet=True) == 0
    for name in "ab":
        assert (tmp_path / "out" / f"{name}.txt").read_text() == str(max(1, cores // workers))


def test_a_native_crash_fails_only_its_own_job(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    jobs = [_job(tmp_path, "a", "write"), _job(tmp_path, "b", "crash"), _job(tmp_path, "c", "fail"),
            _job(tmp_path, "d", "write"), _job(tmp_path, "e", "unsupported"), _job(tmp_path, "f", "write")]
    code = batch.run_jobs(batch_jobs.handler, jobs, workers=2)
    out, err = capfd.readouterr()
    assert code == 1, (out, err)  # the crash is the most serious failure
    for name in "adf":  # written by workers, including the ones that ran after the crash
        assert (tmp_path / "out" / f"{name}.txt").read_text() == f"content of {name}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "d.txt", "f.txt"]
    assert sorted(_lines(out)[:-1]) == [f"ok {n} -> {tmp_path / 'out' / (n + '.txt')}" for n in "adf"]
    assert _lines(out)[-1] == "3 of 6 converted, 3 failed"
    errors = _lines(err)
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors), errors
    assert any(re.fullmatch(r"error: b: the worker process died \(signal SIGSEGV\) while converting it; .*", e)
               for e in errors), errors
    assert "error: c: this input is bad on purpose" in errors
    assert "error: e: n1 (Weird): unsupported op Weird at opset 13" in errors


class _ReapedElsewhere:
    """A dead worker whose status another thread is still storing: ``exitcode`` reads None a few
    times after ``join`` returns (the executor's thread won the ``waitpid`` race)."""

    def __init__(self, late_reads: int) -> None:
        self.late_reads = late_reads

    def join(self, timeout: float) -> None:
        pass

    @property
    def exitcode(self) -> "int | None":
        self.late_reads -= 1
        return None if self.late_reads >= 0 else -signal.SIGSEGV


def test_a_crash_reaped_by_the_executor_thread_is_still_named() -> None:
    assert batch._died_how([_ReapedElsewhere(late_reads=3)]) == "signal SIGSEGV"


def test_quiet_batch_prints_only_errors_and_verbose_shows_what_jobs_printed(tmp_path: Path,
                                                                          capfd: pytest.CaptureFixture) -> None:
    jobs = [_job(tmp_path, "a", "write"), _job(tmp_path, "b", "unsupported")]
    assert batch.run_jobs(batch_jobs.handler, jobs, workers=1, quiet=True) == 3
    out, err = capfd.readouterr()
    assert out == "" and _lines(err) == ["error: b: n1 (Weird): unsupported op Weird at opset 13"]
    assert batch.run_jobs(batch_jobs.handler, jobs[:1], workers=1, verbose=True) == 0
    out, _ = capfd.readouterr()
    assert _lines(out) == [f"ok a -> {jobs[0].output}", f"  wrote {jobs[0].output}", "1 of 1 converted"]


def test_batch_progress_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    jobs = [_job(tmp_path, "a", "write"), _job(tmp_path, "b", "fail")]
    assert batch.run_jobs(batch_jobs.handler, jobs, workers=2, title="test") == 2
    shown = terminal.getvalue()
    assert "\rtest: 0/2 done" in shown and re.search(r"\rtest: 1/2 done", shown), shown
    assert shown.endswith("\r\x1b[K"), repr(shown[-40:])  # the status line is gone at the end
    assert "error: b: this input is bad on purpose\n" in shown
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert batch.run_jobs(batch_jobs.handler, jobs, workers=2, quiet=True) == 2
    assert "\r" not in sys.stderr.getvalue() and "done" not in sys.stderr.getvalue()


def test_ctrl_c_stops_the_workers_and_leaves_no_files(tmp_path: Path) -> None:
    script = (
        "import sys, argparse\n"
        "from pathlib import Path\n"
        "from common import batch\n"
        "from tests.support import batch_jobs\n"
        "out = Path(sys.argv[1])\n"
        "jobs = [batch.Job(n, str(out / n), argparse.Namespace(kind='sleep', seconds=60, label=n, output=str(out / n),"
        " text='x', quiet=False, verbose=False, debug=False)) for n in ('a', 'b', 'c')]\n"
        "sys.exit(batch.run_jobs(batch_jobs.handler, jobs, workers=2))\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob(".*.tmp"))) < 2:  # both workers are writing
        time.sleep(0.1)
    assert len(list(out.glob(".*.tmp"))) == 2, "the workers did not start"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to the parent only, as `kill -INT` would
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 8, "the running jobs were not interrupted"
    assert list(out.iterdir()) == [], "an interrupted job left a file"
    errors = _lines(stderr)
    assert sorted(errors) == ["error: a: interrupted", "error: b: interrupted",
                              "error: interrupted; not converted: c"], stderr
    assert _lines(stdout) == ["0 of 3 converted, 2 failed, 1 not started"]


# --- onnx2x torch ------------------------------------------------------------------------------------
def _onnx_model(seed: int, hidden: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, hidden)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((hidden,)).astype(np.float32), "b")
    shape = numpy_helper.from_array(np.array([-1, hidden // 2, 2], np.int64), "shape")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["a"], name="add"),
             helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(nodes, f"net{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", hidden // 2, 2])], [w, b, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _same_torch_outputs(batch_pt: Path, single_pt: Path) -> None:
    assert batch_pt.with_suffix(".py").read_bytes() == single_pt.with_suffix(".py").read_bytes()
    got, want = (torch.load(p, weights_only=True) for p in (batch_pt, single_pt))
    assert list(got) == list(want) and len(want) > 0
    for key in want:
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key


def test_onnx2x_batch_matches_single_runs_and_survives_a_corrupt_model(tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    models.mkdir()
    names = ["m0", "m1", "m2"]
    for i, name in enumerate(names):
        onnx.save(_onnx_model(i, 6 + 2 * i), str(models / f"{name}.onnx"))
    corrupt = models / "broken.onnx"
    corrupt.write_bytes(onnx.load(str(models / "m1.onnx")).SerializeToString()[:100])
    inputs = [models / "m0.onnx", corrupt, models / "m1.onnx", models / "m2.onnx"]
    out = tmp_path / "out"
    code = onnx2x_main(["torch", *map(str, inputs), "-j", "2", "-o", f"{out}/", "--input-shape", "x:3,4"])
    stdout, stderr = capfd.readouterr()
    assert code == 2, stderr
    errors = _lines(stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: {corrupt}: "), errors
    assert sorted(_lines(stdout)[:-1]) == [f"ok {models / n}.onnx -> {out / n}.pt" for n in names]
    assert _lines(stdout)[-1] == "3 of 4 converted, 1 failed"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}{s}" for n in names for s in (".pt", ".py"))

    for name in names:  # the same conversions one at a time, in this process
        single = tmp_path / "single" / f"{name}.pt"
        assert onnx2x_main(["torch", str(models / f"{name}.onnx"), "-o", str(single), "--input-shape", "x:3,4",
                            "-q"]) == 0
        _same_torch_outputs(out / f"{name}.pt", single)
    capfd.readouterr()


def test_onnx2x_refuses_ambiguous_outputs_before_converting(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(2):
        onnx.save(_onnx_model(i, 4), str(tmp_path / f"m{i}.onnx"))
    (tmp_path / "other").mkdir()
    onnx.save(_onnx_model(5, 4), str(tmp_path / "other" / "m0.onnx"))
    a, b, a2 = str(tmp_path / "m0.onnx"), str(tmp_path / "m1.onnx"), str(tmp_path / "other" / "m0.onnx")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    cases = {
        ("torch", a, b, "-o", str(tmp_path / "net.pt")): "with 2 models -o must be a folder",
        ("torch", a, b, "--simplify-path", str(tmp_path / "s.onnx")): "--simplify-path",
        ("torch", a, a2, "-o", str(tmp_path / "out") + "/"): "would both write",
        ("torch", a, a, "-j", "2"): "would both write",
    }
    for argv, expected in cases.items():
        assert onnx2x_main(list(argv)) == 2, argv
        captured = capsys.readouterr()
        errors = _lines(captured.err)
        assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], (argv, errors)
        assert captured.out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_onnx2x_one_model_is_unchanged_by_j_and_accepts_a_folder(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a protobuf \xff")
    results = []
    for jobs in ("1", "4"):
        code = onnx2x_main(["torch", str(bad), "-j", jobs])
        results.append((code, capsys.readouterr()))
    assert results[0] == results[1] and results[0][0] == 2
    assert _lines(results[0][1].err)[0].startswith(f"error: {bad}: ")
    onnx.save(_onnx_model(3, 4), str(tmp_path / "net.onnx"))
    assert onnx2x_main(["torch", str(tmp_path / "net.onnx"), "-o", f"{tmp_path / 'dir'}/", "-j", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'dir' / 'net.pt'} and {tmp_path / 'dir' / 'net.py'}")


def test_onnx2x_progress_shows_stages_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    onnx.save(_onnx_model(1, 4), str(tmp_path / "net.onnx"))
    argv = ["torch", str(tmp_path / "net.onnx"), "-o", str(tmp_path / "o" / "net.pt")]
    assert onnx2x_main(argv) == 0
    assert capsys.readouterr().err == ""  # not a terminal: nothing
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert onnx2x_main(argv) == 0
    shown = terminal.getvalue()
    positions = [shown.find(f"\ronnx2x net.onnx: {stage} (") for stage in
                 ("load", "simplify", "convert", "write", "verify")]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), shown
    assert shown.endswith("\r\x1b[K")
    assert "wrote " in capsys.readouterr().out
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert onnx2x_main([*argv, "-q"]) == 0
    assert sys.stderr.getvalue() == ""


# --- x2onnx mxnet ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mx():
    from tests.support.mxnet_ops import mx as mxnet

    return mxnet


def _save_checkpoint(mx, prefix: Path, sym, params: dict, epoch: int = 1) -> None:
    sym.save(f"{prefix}-symbol.json")
    mx.nd.save(f"{prefix}-{epoch:04d}.params", {f"arg:{k}": mx.nd.array(v) for k, v in params.items()})


def _mxnet_nets(mx):
    from tests.support.mxnet_ops import rand, random_params

    data = mx.sym.var("data")
    conv = mx.sym.Activation(mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv"), act_type="relu",
                             name="relu")
    nets = {
        "fc": mx.sym.FullyConnected(conv, num_hidden=5, name="fc"),
        "pool": mx.sym.Pooling(conv, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool"),
        "sig": mx.sym.sigmoid(mx.sym.Convolution(data, kernel=(1, 1), num_filter=2, name="c1"), name="sig"),
    }
    return {name: (sym, random_params(sym, {"data": rand(1, 3, 6, 6)}, seed=i))
            for i, (name, sym) in enumerate(nets.items())}


def test_x2onnx_batch_matches_single_runs_and_survives_a_corrupt_model(mx, tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture) -> None:
    from x2onnx.cli import main

    models = tmp_path / "models"
    models.mkdir()
    nets = _mxnet_nets(mx)
    for name, (sym, params) in nets.items():
        _save_checkpoint(mx, models / name, sym, params)
    sym, params = nets["fc"]
    _save_checkpoint(mx, models / "cut", sym, params)
    cut = models / "cut-0001.params"
    cut.write_bytes(cut.read_bytes()[:150])
    prefixes = [str(models / n) for n in ("fc", "cut", "pool", "sig")]
    out = tmp_path / "out"
    options = ["--epoch", "1", "--input-shape", "data:1,3,6,6"]
    code = main(["mxnet", *prefixes, *options, "-j", "2", "-o", f"{out}/"])
    stdout, stderr = capfd.readouterr()
    assert code == 2, stderr
    errors = _lines(stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: {cut}: cannot read MXNet params"), errors
    assert sorted(_lines(stdout)[:-1]) == [f"ok {models / n} -> {out / n}.onnx" for n in sorted(nets)]
    assert _lines(stdout)[-1] == "3 of 4 converted, 1 failed"
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.onnx" for n in sorted(nets)]

    for name in nets:  # one at a time, in this process, with the SYMBOL.json PARAMS form
        single = tmp_path / "single" / f"{name}.onnx"
        assert main(["mxnet", str(models / f"{name}-symbol.json"), str(models / f"{name}-0001.params"),
                     "--input-shape", "data:1,3,6,6", "-o", str(single), "-q"]) == 0
        assert (out / f"{name}.onnx").read_bytes() == single.read_bytes(), name
        onnx.checker.check_model(onnx.load(str(single)), full_check=True)
    capfd.readouterr()


def test_x2onnx_inputs_are_paired_by_extension_or_taken_as_prefixes() -> None:
    from x2onnx.cli import _mxnet_pairs, build_parser

    def pairs(*argv: str) -> list[tuple[str, str, str]]:
        return _mxnet_pairs(build_parser().parse_args(["mxnet", *argv]))

    assert pairs("a-symbol.json", "a-0000.params", "b.json", "b.params") == [
        ("a-symbol.json", "a-symbol.json", "a-0000.params"), ("b.json", "b.json", "b.params")]
    assert pairs("x/a", "b", "--epoch", "12") == [("x/a", "x/a-symbol.json", "x/a-0012.params"),
                                                  ("b", "b-symbol.json", "b-0012.params")]
    assert pairs("net-symbol.json", "weights.bin") == [("net-symbol.json", "net-symbol.json", "weights.bin")]
    refused = {
        ("a-symbol.json", "a.params", "b-symbol.json"): "missing the PARAMS of b-symbol.json",
        ("a-symbol.json", "b-symbol.json", "b.params"): "missing the PARAMS of a-symbol.json",
        ("a.params", "a-symbol.json", "b-symbol.json", "b.params"): "expected a SYMBOL.json here, got 'a.params'",
        ("det1", "det2", "det3"): "forgot --epoch N?",
        ("det1", "det1-0001.params", "--epoch", "1"): "not both",
    }
    for argv, expected in refused.items():
        with pytest.raises(ConversionError, match=re.escape(expected)):
            pairs(*argv)


def test_x2onnx_refuses_a_file_output_for_several_models(capfd: pytest.CaptureFixture, tmp_path: Path) -> None:
    from x2onnx.cli import main

    code = main(["mxnet", "a", "b", "--epoch", "1", "-o", str(tmp_path / "x.onnx")])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert _lines(err) == [f"error: -o {tmp_path / 'x.onnx'}: with 2 models -o must be a folder (end it with '/', "
                           f"e.g. -o onnx/), or leave -o out to write NAME.onnx into the current folder"]
    code = main(["mxnet", "d/a", "e/a", "--epoch", "1"])
    assert code == 2 and "would both write a.onnx" in capfd.readouterr().err


def test_x2onnx_progress_shows_stages_on_a_terminal(mx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from x2onnx.cli import main

    sym, params = _mxnet_nets(mx)["pool"]
    _save_checkpoint(mx, tmp_path / "pool", sym, params)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["mxnet", str(tmp_path / "pool"), "--epoch", "1", "--input-shape", "data:1,3,6,6",
                 "-o", str(tmp_path / "p.onnx")]) == 0
    shown = terminal.getvalue()
    positions = [shown.find(f"\rx2onnx pool: {stage} (") for stage in
                 ("load", "convert", "simplify", "verify", "write")]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), shown
    assert shown.endswith("\r\x1b[K")
    assert "wrote " in capsys.readouterr().out and (tmp_path / "p.onnx").is_file()


def test_help_explains_batches() -> None:
    from x2onnx.cli import build_parser as x2onnx_parser
    from onnx2x.cli import build_parser as onnx2x_parser

    for parser, command in ((onnx2x_parser(), "torch"), (x2onnx_parser(), "mxnet")):
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        text = sub.format_help()
        jobs = next(a for a in sub._actions if a.dest == "jobs")
        assert "-j N, --jobs N" in text and "For example: " in jobs.help and "-j 2" in jobs.help
        assert "several models at once" in text and "run one command per model" in text
        assert "progress:" in text and ("-o out/" in text or "-o onnx/" in text)
