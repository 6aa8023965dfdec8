"""Child process of the fuzz suite: runs one CLI conversion per request, reports how it ended.

Runs in its own process so that a crash in native code (MXNet, onnxruntime, onnxsim) kills only
this worker; the parent counts it as a failure and starts a new one. Protocol: one JSON object per
line on stdin (``{"argv": [...], "cli": "onnx2x"|"x2onnx", "outputs": [...]}``), one per line on
stdout (``{"outcome": "converted"|"clean"|"other", "detail": ...}``).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings


def classify(code: int, stderr: str, outputs: list[str]) -> dict:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    error_lines = [ln for ln in lines if ln.startswith("error: ")]
    leftovers = [p for p in outputs if os.path.exists(p)]
    if code == 0:
        missing = [p for p in outputs if not os.path.exists(p)]
        if missing:
            return {"outcome": "other", "detail": f"exit 0 but no output {missing}"}
        return {"outcome": "converted", "detail": ""}
    if code in (2, 3) and len(error_lines) == 1 and "internal error" not in error_lines[0]:
        if leftovers:
            return {"outcome": "other", "detail": f"failed but left {leftovers}: {error_lines[0]}"}
        return {"outcome": "clean", "detail": error_lines[0]}
    return {"outcome": "other", "detail": f"exit {code}: {' | '.join(lines[-3:])[:500]}"}


def main() -> None:
    warnings.simplefilter("ignore")
    from onnx2x.cli import main as onnx2x_main

    try:
        from x2onnx.cli import main as x2onnx_main
    except Exception:  # noqa: BLE001 - reported per request below
        x2onnx_main = None
    clis = {"onnx2x": onnx2x_main, "x2onnx": x2onnx_main}
    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        err = io.StringIO()
        code = None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = clis[req["cli"]](req["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 - an escaped exception is exactly what we count
                print(f"uncaught {type(exc).__name__}: {exc}", file=sys.stderr)
                code = -1
        res = classify(int(code if code is not None else 0), err.getvalue(), req.get("outputs", []))
        print(json.dumps(res), file=out, flush=True)


if __name__ == "__main__":
    main()
