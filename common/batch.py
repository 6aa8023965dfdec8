"""Convert several inputs at once, in worker processes, so that one failure costs only itself.

Why processes and not threads: the converters hold the GIL most of the time, and a native crash
(MXNet, onnxruntime, onnxsim) kills a whole process. Why ``spawn``: MXNet and torch start
threads at import, and forking a process with threads can deadlock the child.

Each of the ``-j N`` *lanes* is a thread of this process that owns a one-worker
``ProcessPoolExecutor`` and feeds it one job at a time. When that worker dies, the executor
raises ``BrokenProcessPool`` for exactly the job it was running: that job is reported as failed,
the lane starts a fresh worker and goes on with the remaining jobs, and the other lanes never
notice. Every job prints one line when it ends (``ok <input> -> <output>`` on stdout or
``error: <one line>`` on stderr); the batch exits with the most serious exit code of its jobs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .cli import EXIT_INTERNAL, LOG_FORMAT, describe_failure, log_level
from .errors import ConversionError
from .progress import Progress, wants_progress

EXIT_INTERRUPTED = 130

# Most serious last: a crash or bug (1) outranks a verification failure (3), which outranks bad
# input (2); an interrupted batch (130) outranks everything.
_SEVERITY = {0: 0, 2: 1, 3: 2, EXIT_INTERNAL: 3, EXIT_INTERRUPTED: 4}

_GRACE_S = 10.0  # how long an interrupted worker may take to clean up before it is terminated

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Job:
    """One conversion: ``args`` are the handler's arguments for this input alone."""

    label: str  # the input as the user named it
    output: str  # what the job writes, for its ``ok`` line
    args: argparse.Namespace


@dataclass
class Outcome:
    """How a job ended, as the worker reports it back."""

    code: int
    error: str = ""  # the line after "error:" when code != 0
    stdout: str = ""  # what the handler printed (shown with -v)
    logs: list[str] = field(default_factory=list)  # log lines at the level the user asked for


def worst_code(codes: Sequence[int]) -> int:
    """The exit code of a batch: that of its most serious failure, 0 if every job succeeded."""
    return max(codes, key=lambda c: (_SEVERITY.get(c, 3), c), default=0)


def jobs_count(text: str) -> int:
    """``-j`` value: a number of workers >= 1, or 0 for one per CPU core."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"-j {text!r}: expected a whole number, e.g. -j 2") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"-j {n}: must be >= 0 (0 means one worker per CPU core)")
    return n or (os.cpu_count() or 1)


def add_jobs_flag(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "-j", "--jobs", type=jobs_count, default=1, metavar="N",
        help="convert up to N inputs at the same time, each in its own worker process (default 1; "
             "0 = one per CPU core). Every worker holds a model in memory and starts in a few "
             f"seconds; a worker that crashes fails only its own input. For example: {example}")


def names_a_folder(path: "str | os.PathLike[str]") -> bool:
    """``-o out/`` (a trailing separator) or an existing folder: the outputs go inside it."""
    text = os.fspath(path)
    seps = tuple(sep for sep in {os.sep, "/", os.altsep} if sep)
    return text.endswith(seps) or os.path.isdir(text)


def refuse_clashes(planned: Sequence[tuple[str, Sequence["str | os.PathLike[str]"]]]) -> None:
    """Refuse a batch in which two inputs would write the same file (the same input twice, or
    ``a/net.onnx b/net.onnx -o out/``): one would silently replace the other."""
    owner: dict[str, str] = {}
    for label, paths in planned:
        for path in paths:
            key = os.path.normcase(os.path.abspath(os.fspath(path)))
            if key in owner:
                raise ConversionError(f"{owner[key]} and {label} would both write {os.fspath(path)}; convert "
                                      f"them with separate commands, each with its own -o")
            owner[key] = label


# --- worker side --------------------------------------------------------------------------------
_busy = False  # a job is running in this worker: an interrupt should stop it (and clean up)
_core_share: Optional[int] = None  # in a worker: the cores of the machine over the batch's workers


def cores_for_this_process() -> int:
    """The CPU cores this process may count on: those it may run on, or in a batch worker its
    share of them (the cores over the number of workers), since the sibling workers use the rest.
    For work that is worth starting only beside an idle core (the CLI's early reference)."""
    if _core_share is not None:
        return _core_share
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _on_interrupt(signum: int, frame: object) -> None:
    """SIGINT in a worker: stop the running job once, so its temporary files are removed; an idle
    worker ignores it (the parent decides what happens next)."""
    global _busy
    if _busy:
        _busy = False
        raise KeyboardInterrupt


def _init_worker(core_share: int) -> None:
    global _core_share
    _core_share = core_share
    signal.signal(signal.SIGINT, _on_interrupt)


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a log line is not worth a failed job
            pass


def run_job(handler: Handler, args: argparse.Namespace) -> Outcome:
    """Run ``handler(args)`` like ``run_cli`` would, but return the result instead of printing it."""
    global _busy
    logs: list[str] = []
    root = logging.getLogger()
    root.handlers = [_Collect(logs)]
    root.setLevel(log_level(args))
    printed = io.StringIO()
    _busy = True
    try:
        with contextlib.redirect_stdout(printed):
            try:
                code, line = int(handler(args) or 0), ""
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure becomes one line
                code, line = describe_failure(exc, debug=getattr(args, "debug", False))
    finally:
        _busy = False
    return Outcome(code, line, printed.getvalue(), logs)


# --- parent side --------------------------------------------------------------------------------
def _worker_processes(pool: ProcessPoolExecutor) -> list:
    """The pool's worker processes, snapshotted while they are known (the executor forgets them when it breaks)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _died_how(processes: Sequence) -> str:
    """What killed a worker (``signal SIGSEGV``, ``exit code 3``), from its process objects.

    The executor's own thread reaps the dead worker at the same time; when it wins the race, our
    ``waitpid`` fails and ``exitcode`` stays None until that thread has stored the status, so poll
    briefly instead of trusting the first read."""
    for proc in processes:
        deadline = time.monotonic() + 5
        proc.join(timeout=5)
        while proc.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
            proc.join(timeout=0.01)
        code = proc.exitcode
        if code is None:
            continue
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"
    return "cause unknown"


class _Batch:
    def __init__(self, handler: Handler, jobs: Sequence[Job], workers: int, *, quiet: bool, verbose: bool,
                 progress: Progress) -> None:
        self.handler = handler
        self.jobs = list(jobs)
        self.workers = max(1, min(workers, len(self.jobs)))
        self.quiet = quiet
        self.verbose = verbose
        self.progress = progress
        self.codes: list[Optional[int]] = [None] * len(self.jobs)
        self._lock = threading.Lock()
        self._next = 0
        self._running: dict[int, str] = {}
        self._pools: dict[int, ProcessPoolExecutor] = {}
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._core_share = max(1, cores_for_this_process() // self.workers)

    # lanes
    def _take(self, lane: int) -> Optional[int]:
        with self._lock:
            if self._stop.is_set() or self._next >= len(self.jobs):
                return None
            index, self._next = self._next, self._next + 1
            self._running[lane] = os.path.basename(self.jobs[index].label.rstrip("/\\")) or self.jobs[index].label
        self._show()
        return index

    def _lane(self, lane: int) -> None:
        pool: Optional[ProcessPoolExecutor] = None
        try:
            while (index := self._take(lane)) is not None:
                job = self.jobs[index]
                if pool is None:
                    pool = ProcessPoolExecutor(1, mp_context=self._context, initializer=_init_worker,
                                               initargs=(self._core_share,))
                    with self._lock:
                        self._pools[lane] = pool
                workers: list = []
                try:
                    future = pool.submit(run_job, self.handler, job.args)
                    workers = _worker_processes(pool)
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = self._crashed(job, workers)
                    pool.shutdown(wait=True)
                    pool = None
                except Exception as exc:  # noqa: BLE001 - e.g. arguments that cannot be sent: a bug
                    code, line = describe_failure(exc)
                    outcome = Outcome(code, line)
                self._report(lane, index, outcome)
        finally:
            with self._lock:
                self._pools.pop(lane, None)
            if pool is not None:
                pool.shutdown(wait=True)

    def _crashed(self, job: Job, workers: Sequence) -> Outcome:
        if self._stop.is_set():
            return Outcome(EXIT_INTERRUPTED, f"{job.label}: interrupted")
        return Outcome(EXIT_INTERNAL, f"{job.label}: the worker process died ({_died_how(workers)}) while "
                                      f"converting it; rerun it alone with --debug to see why")

    def _report(self, lane: int, index: int, outcome: Outcome) -> None:
        job = self.jobs[index]
        with self._lock:
            self.codes[index] = outcome.code
            self._running.pop(lane, None)
        for line in outcome.logs:
            self.progress.print_line(line, sys.stderr)
        if outcome.code == 0:
            if not self.quiet:
                self.progress.print_line(f"ok {job.label} -> {job.output}")
            if self.verbose and outcome.stdout.strip():
                for line in outcome.stdout.strip().splitlines():
                    self.progress.print_line(f"  {line}")
        else:
            line = outcome.error if job.label in outcome.error else f"{job.label}: {outcome.error}"
            self.progress.print_line(f"error: {line}", sys.stderr)
        self._show()

    def _show(self) -> None:
        with self._lock:
            finished = [c for c in self.codes if c is not None]
            running = [self._running[k] for k in sorted(self._running)]
        self.progress.set_jobs(len(finished), sum(1 for c in finished if c), len(self.jobs), running)

    def _signal_workers(self, how: str) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    if how == "interrupt":
                        os.kill(proc.pid, signal.SIGINT)
                    else:
                        proc.terminate()

    # the whole batch
    def run(self) -> int:
        lanes = [threading.Thread(target=self._lane, args=(i,), name=f"batch-lane-{i}", daemon=True)
                 for i in range(self.workers)]
        for lane in lanes:
            lane.start()
        try:
            for lane in lanes:
                while lane.is_alive():
                    lane.join(0.2)
        except KeyboardInterrupt:
            self._interrupt(lanes)
        codes = [c for c in self.codes if c is not None]
        skipped = [job.label for job, c in zip(self.jobs, self.codes) if c is None]
        if skipped:
            self.progress.print_line(f"error: interrupted; not converted: {', '.join(skipped)}", sys.stderr)
            codes.append(EXIT_INTERRUPTED)
        if not self.quiet:
            converted = sum(1 for c in self.codes if c == 0)
            failed = sum(1 for c in self.codes if c)
            self.progress.clear()
            print(f"{converted} of {len(self.jobs)} converted" + (f", {failed} failed" if failed else "")
                  + (f", {len(skipped)} not started" if skipped else ""), flush=True)
        return worst_code(codes)

    def _interrupt(self, lanes: Sequence[threading.Thread]) -> None:
        """Ctrl-C: start nothing new, let running jobs stop and clean up, then end their workers."""
        self._stop.set()
        self._signal_workers("interrupt")  # a terminal already sent it to them; a `kill -INT` did not
        deadline = time.monotonic() + _GRACE_S
        for lane in lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        self._signal_workers("terminate")
        for lane in lanes:
            lane.join(5)


def run_jobs(handler: Handler, jobs: Sequence[Job], *, workers: int, quiet: bool = False, verbose: bool = False,
             title: str = "converting") -> int:
    """Run ``handler`` once per job in up to ``workers`` worker processes; print one line per job.

    ``handler`` must be a module-level function (workers import it by name). Returns the most
    serious exit code of the jobs (see :func:`worst_code`), 0 when all of them succeeded.
    """
    if not jobs:
        return 0
    with Progress(title, enabled=wants_progress(quiet)) as progress:
        return _Batch(handler, jobs, workers, quiet=quiet, verbose=verbose, progress=progress).run()
