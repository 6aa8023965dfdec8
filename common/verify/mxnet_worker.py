"""MXNet's outputs computed without its oneDNN kernels, in a process of their own.

MXNet's pip CPU build runs some operators on oneDNN kernels that compute something else than the
operator's definition (SoftmaxOutput on 1-D and 4-D inputs normalises over the last axis only),
even on the plain executor. Only ``MXNET_MKLDNN_ENABLED=0`` at process start avoids them, so when an
export disagrees with MXNet, :func:`run_without_onednn` asks a fresh process with that setting:
MXNet's own second opinion, following the same definitions as its GPU and non-oneDNN kernels.

The worker process starts on the first request and serves every later one of the same process
(a module run as ``python -m common.verify.mxnet_worker``, reading request folders on stdin).
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ConversionFailure
from .compare import to_numpy

class _Worker:
    """One long-lived worker process (starting MXNet costs seconds): requests are folder paths on its
    stdin, each answered by one line, ``ok`` or ``error: ...``."""

    def __init__(self) -> None:
        env = dict(os.environ, MXNET_MKLDNN_ENABLED="0", MXNET_SUBGRAPH_BACKEND="NONE", MXNET_SUBGRAPH_VERBOSE="0")
        self.process = subprocess.Popen([sys.executable, "-m", __name__], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        atexit.register(self.close)

    def ask(self, folder: Path) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{folder}\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip() or "error: the worker exited"

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()


_WORKER: Optional[_Worker] = None


def run_without_onednn(symbol_json: str, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                       inputs: Mapping[str, Any]) -> list[np.ndarray]:
    """The symbol's outputs on ``inputs``, computed by MXNet with oneDNN off (plain executor)."""
    global _WORKER
    with tempfile.TemporaryDirectory(prefix="mxnet-no-onednn-") as tmp:
        folder = Path(tmp)
        (folder / "symbol.json").write_text(symbol_json, encoding="utf-8")
        np.savez(folder / "params.npz", **{f"arg:{k}": to_numpy(v) for k, v in arg_params.items()},
                 **{f"aux:{k}": to_numpy(v) for k, v in aux_params.items()})
        np.savez(folder / "inputs.npz", **{k: to_numpy(v) for k, v in inputs.items()})
        if _WORKER is None or not _WORKER.alive():
            _WORKER = _Worker()
        answer = _WORKER.ask(folder)
        if answer != "ok":
            raise ConversionFailure(f"MXNet without oneDNN failed: {answer.removeprefix('error: ')[:300]}")
        with np.load(folder / "out.npz", allow_pickle=False) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _answer(folder: Path) -> None:
    from .runners import MXNetRunner, import_mxnet

    mx = import_mxnet()
    symbol = mx.sym.load(str(folder / "symbol.json"))
    with np.load(folder / "params.npz", allow_pickle=False) as saved:
        arg = {k[4:]: saved[k] for k in saved.files if k.startswith("arg:")}
        aux = {k[4:]: saved[k] for k in saved.files if k.startswith("aux:")}
    with np.load(folder / "inputs.npz", allow_pickle=False) as saved:
        inputs = {k: saved[k] for k in saved.files}
    outputs = MXNetRunner(symbol, arg, aux).run(inputs).outputs
    np.savez(folder / "out.npz", *outputs.values())


def main() -> int:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        try:
            _answer(Path(line.strip()))
            print("ok", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
            print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
