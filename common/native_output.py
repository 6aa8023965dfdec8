"""Capture what native code prints to the process's stdout and stderr.

Why: onnx-simplifier's C++ core prints a line for every node it cannot fold ("WARNING: failed to
run "Gather" op ... skip... no initializer"). Run on a graph whose weights are hidden (how
:mod:`common.simplify` runs it), that is every node reading a hidden weight: BEiT's relative
position tables gave 218 such lines on a conversion that was right. Python's ``sys.stdout``
redirection cannot reach those writes; the file descriptors can.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from typing import Iterator


def _flush_c_streams() -> None:
    """Flush C's stdio buffers (C++ streams write through them); a no-op where libc is not found."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def captured_native_output(into: list[str]) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 to a temporary file for the ``with`` block; its text is
    appended to ``into`` afterwards (also on an exception). Python's own writes in the block are
    captured too."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no such descriptors (an embedded interpreter): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            _flush_c_streams()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            into.append(sink.read().decode("utf-8", errors="replace"))
