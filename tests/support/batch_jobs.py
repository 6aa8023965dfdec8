"""Job handlers for testing ``common.batch`` without a converter: cheap to import in a worker.

``args.kind`` says what the job does: ``write`` (write ``args.text`` to ``args.output``),
``fail`` (raise a ConversionError), ``crash`` (kill the worker with SIGSEGV, as a native crash
would), ``sleep`` (write a temporary file, sleep, then write the output), ``cores`` (write the
cores the worker counts on, :func:`common.batch.cores_for_this_process`).
"""
from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from common.atomic import atomic_path
from common.errors import ConversionError, UnsupportedOpError


def handler(args: argparse.Namespace) -> int:
    if args.kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(30)  # not reached: the signal ends the process
    if args.kind == "fail":
        raise ConversionError("this input is bad on purpose", file=args.label)
    if args.kind == "unsupported":
        raise UnsupportedOpError("Weird", 13, "n1").with_context(file=args.label)
    if args.kind == "cores":
        from common.batch import cores_for_this_process

        args.text = str(cores_for_this_process())
    with atomic_path(args.output) as tmp:
        if args.kind == "sleep":
            Path(tmp).write_text("partial")
            time.sleep(float(args.seconds))
        Path(tmp).write_text(args.text)
    print(f"wrote {args.output}")
    return 0
