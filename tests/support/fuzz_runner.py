"""Parent side of the fuzz suite: a small pool of restartable worker processes with time limits."""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """One child process running ``tests.support.fuzz_worker``; restarted after a crash or hang."""

    def __init__(self, startup_timeout: float = 120.0) -> None:
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.restarts = 0

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fuzz_worker"], cwd=str(ROOT), env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        ready = self._read(self.startup_timeout)
        if ready is None or not ready.get("ready"):
            raise RuntimeError("fuzz worker did not start")

    def _read(self, timeout: float) -> Optional[dict]:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return None
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        return json.loads(line) if line else None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, request: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        start = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.kill()
            self.restarts += 1
            return {"outcome": "other", "detail": "worker died before the request"}
        reply = self._read(timeout)
        if reply is None:
            died = self.proc.poll() is not None
            code = self.proc.returncode
            self.kill()
            self.restarts += 1
            if died:
                return {"outcome": "other", "detail": f"native crash (exit {code})"}
            return {"outcome": "other", "detail": f"hang (> {timeout:.0f} s)"}
        reply["seconds"] = time.monotonic() - start
        return reply

    def close(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.kill()
        self.proc = None
