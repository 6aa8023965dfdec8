"""Progress on a terminal: the stage a long conversion is in, how far a batch has come.

Drawn as one line on stderr that rewrites itself, and only when stderr is a terminal and the
user did not ask for quiet (``-q``): logs, pipes and tests see nothing of it. Libraries report
the stage they enter with :func:`stage`; it costs nothing when no CLI shows progress.
"""
from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import IO, Optional, Sequence

_current: Optional["Progress"] = None

_TICK_S = 0.5  # how often the elapsed time is redrawn


def stage(name: str) -> None:
    """Tell the progress display (if a CLI shows one in this process) that ``name`` starts now."""
    shown = _current
    if shown is not None:
        shown.set_stage(name)


def done() -> None:
    """The work is over (its result is about to be printed): take the progress line away for good."""
    shown = _current
    if shown is not None:
        shown.finish()


def wants_progress(quiet: bool, stream: Optional[IO[str]] = None) -> bool:
    """Progress is for a person watching: a terminal on stderr and no ``-q``."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class _ClearBeforeLogging(logging.Filter):
    """Wipe the progress line before a log record is printed, so the two never share a line."""

    def __init__(self, progress: "Progress") -> None:
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self._progress.clear()
        return True


class Progress:
    """One self-rewriting status line: ``<title>: <stage> (12 s)`` or ``<title>: 3/8 done, ...``.

    Use as a context manager; when ``enabled`` is false every method does nothing. Safe to call
    from several threads (a batch updates it from one thread per worker).
    """

    def __init__(self, title: str, *, enabled: bool, stream: Optional[IO[str]] = None) -> None:
        self.title = title
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self._lock = threading.RLock()
        self._text = ""
        self._since = time.monotonic()
        self._started = self._since
        self._shown = False
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        self._filter = _ClearBeforeLogging(self)
        self._previous: Optional[Progress] = None

    # --- lifetime -----------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        global _current
        if not self.enabled:
            return self
        self._previous, _current = _current, self
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        global _current
        if not self.enabled:
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)
        if _current is self:
            _current = self._previous
        self.clear()

    # --- what to show -------------------------------------------------------------------------
    def set_stage(self, name: str) -> None:
        """A single conversion entered stage ``name`` (load, simplify, convert, verify, write)."""
        if not self.enabled:
            return
        with self._lock:
            self._text = name
            self._since = time.monotonic()
            self._draw()

    def set_jobs(self, done: int, failed: int, total: int, running: Sequence[str]) -> None:
        """A batch: ``done`` of ``total`` finished (``failed`` of them failed), ``running`` now."""
        if not self.enabled:
            return
        text = f"{done}/{total} done"
        if failed:
            text += f", {failed} failed"
        if running:
            text += "; converting " + ", ".join(running)
        with self._lock:
            self._text = text
            self._since = self._started
            self._draw()

    def print_line(self, text: str, stream: Optional[IO[str]] = None) -> None:
        """Print a whole line (a job's result) without mixing it into the progress line."""
        with self._lock:
            self.clear()
            print(text, file=stream or sys.stdout, flush=True)
            if self.enabled and self._text:
                self._draw()

    def finish(self) -> None:
        """Stop showing anything until the next update."""
        with self._lock:
            self._text = ""
            self.clear()

    def clear(self) -> None:
        """Remove the progress line from the terminal (it comes back on the next update)."""
        if not self.enabled:
            return
        with self._lock:
            if self._shown:
                self._write("\r\x1b[K")
                self._shown = False

    # --- drawing ------------------------------------------------------------------------------
    def _draw(self) -> None:
        if not self._text:
            return
        elapsed = time.monotonic() - self._since
        line = f"{self.title}: {self._text} ({elapsed:.0f} s)"
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        if len(line) > width:
            line = line[: width - 3] + "..."
        self._write("\r" + line + "\x1b[K")
        self._shown = True

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: progress is not worth failing for
            self.enabled = False

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_S):
            with self._lock:
                if self._shown or self._text:
                    self._draw()
