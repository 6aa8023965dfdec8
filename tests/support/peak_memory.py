"""Time and peak memory of one conversion, measured in a fresh process.

``python -m tests.support.peak_memory MODE MODEL.onnx [OUT.pt] [--no-warm-up] [-- CLI FLAGS]`` imports
what MODE needs, runs MODE once on a tiny model (one-time costs: imports, onnxsim's and
onnxruntime's first-call set-up) unless ``--no-warm-up``, then measures one run on MODEL and
prints one JSON line: ``seconds``, ``peak_mb`` (peak resident size, VmHWM reset through
``/proc/self/clear_refs``, minus the resident size just before) and ``held_mb`` (resident size
after, minus before). MODE: ``load`` (``onnx.load``), ``convert`` (``onnx2x.torch.convert``),
``cli`` (what ``onnx2x torch MODEL -o OUT.pt [FLAGS]`` runs after parsing its arguments; OUT.pt
defaults to a temporary folder). :func:`measure_in_subprocess` runs it and returns the dict.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
MODES = ("load", "convert", "cli")


def status_mb(key: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM, ...) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mapped_file(address: int) -> Optional[str]:
    """What this process maps at ``address``: a file path, ``[heap]``, ``""`` (anonymous), None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return parts[5].strip() if len(parts) > 5 else ""
    return None


def tiny_model(folder: str) -> str:
    """Conv + BatchNormalization + Relu + pooling + MatMul: every stage of a conversion, once."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.ones(8, np.float32), "s"), numpy_helper.from_array(np.zeros(8, np.float32), "b"),
             numpy_helper.from_array(np.ones(8, np.float32), "v"),
             numpy_helper.from_array(rng.standard_normal((8, 2048)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "b", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2048])], inits)
    path = os.path.join(folder, "tiny.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def runner(mode: str, cli_flags: Sequence[str] = ()) -> Callable[[str, str], Any]:
    """``run(model, out)`` for MODE, its imports done."""
    import onnx

    if mode == "load":
        return lambda path, out: onnx.load(path)
    import logging

    from onnx2x import cli
    from onnx2x.torch import convert

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    if mode == "convert":
        return lambda path, out: convert(path)
    if mode != "cli":
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")

    def run(path: str, out: str) -> int:
        args = cli.build_parser().parse_args(["torch", path, "-q", "-o", out, *cli_flags])
        args.model = path
        return cli.convert_torch(args)

    return run


def measure(mode: str, model: str, out: Optional[str] = None, *, warm_up: bool = True,
            cli_flags: Sequence[str] = ()) -> dict[str, Any]:
    """Measure one run of ``mode`` on ``model`` in this process (see the module docstring)."""
    import gc

    with tempfile.TemporaryDirectory(prefix="peak_memory_") as tmp:
        run = runner(mode, cli_flags)
        if warm_up:
            result = run(tiny_model(tmp), os.path.join(tmp, "tiny.pt"))
            del result
        gc.collect()
        exact = reset_peak()
        base = status_mb("VmRSS")
        start = time.perf_counter()
        result = run(model, out or os.path.join(tmp, Path(model).stem + ".pt"))
        seconds = time.perf_counter() - start
        peak = status_mb("VmHWM") if exact else status_mb("VmRSS")
        held = status_mb("VmRSS") - base
        del result
    return {"seconds": seconds, "peak_mb": peak - base, "held_mb": held, "base_mb": base, "exact_peak": exact}


def measure_in_subprocess(mode: str, model: "str | os.PathLike[str]", out: "str | os.PathLike[str] | None" = None, *,
                          warm_up: bool = True, cli_flags: Sequence[str] = (), cwd: "str | os.PathLike[str] | None" = None,
                          timeout: float = 3600) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process; a failure comes back as ``{"error": last line}``."""
    cmd = [sys.executable, "-m", "tests.support.peak_memory", mode, str(model)]
    if out is not None:
        cmd.append(str(out))
    if not warm_up:
        cmd.append("--no-warm-up")
    if cli_flags:
        cmd += ["--", *cli_flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(cwd or REPO), env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:300],
                "stderr": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, flags = argv[:at], argv[at + 1:]
    warm_up = "--no-warm-up" not in argv
    argv = [a for a in argv if a != "--no-warm-up"]
    if len(argv) not in (2, 3) or argv[0] not in MODES:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(measure(argv[0], argv[1], argv[2] if len(argv) == 3 else None, warm_up=warm_up, cli_flags=flags)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
