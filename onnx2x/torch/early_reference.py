"""onnxruntime's side of the CLI's check, computed on another core while the model converts.

Why: the check's reference (an onnxruntime session and one run on the drawn inputs) needs only
the user's model, not the conversion, and onnxruntime releases the GIL while it loads and runs,
whereas the converter is Python on one core. Done one after the other, the reference was 0.37 s
of the 0.9 s ``onnx2x torch`` took on DenseNet-121; on a second core most of it overlaps the
conversion.

The price is memory: onnxruntime's copy of the weights is alive while the conversion holds its
own. So the reference runs early only for models whose weights are small (at most
:data:`EARLY_MAX_WEIGHT_BYTES`, and 1/8 of the free memory: :func:`worth_running_early`),
where the fixed costs it hides are most of a conversion and the extra copy is small; bigger ones
keep the order that holds one copy at a time (:func:`onnx2x.torch.verify.check_module` computes
the reference after the module is written and let go). Measured on two cores, interleaved with
the check after the conversion: SqueezeNet 0.146 -> 0.107 s, DenseNet-121 0.855 -> 0.698 s,
ResNet-50 (98 MB) 0.659 -> 0.570 s at the same peak memory; AlexNet (233 MB) gained nothing
(0.732 -> 0.736 s) and its peak went from 291 to 508 MB: there onnxruntime's load of the weights
competes with the conversion's.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import onnx

from .verify import Reference, onnxruntime_reference, reference_outputs

log = logging.getLogger(__name__)

# Weights up to this size (and at most 1/8 of the free memory) are worth an early reference.
EARLY_MAX_WEIGHT_BYTES = 128 << 20
# onnxruntime reads a model given as bytes with external data from a folder of our choosing
# (``OnnxRuntimeRunner(data_folder=...)``) from 1.21 on; before, only relative to the working directory.
_FOLDER_OPTION_SINCE = (1, 21)


def _cores() -> int:
    from common.batch import cores_for_this_process

    return cores_for_this_process()


def _free_bytes() -> Optional[int]:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _onnxruntime_reads_folders() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    parts = onnxruntime.__version__.split(".")[:2]
    try:
        return tuple(int(p) for p in parts) >= _FOLDER_OPTION_SINCE
    except ValueError:
        return False


def worth_running_early(proto: onnx.ModelProto) -> bool:
    """True when a second core is there (in a batch worker: in its share of the cores),
    onnxruntime can read ``proto``'s weights from their
    folder, and those weights are small (at most :data:`EARLY_MAX_WEIGHT_BYTES` and 1/8 of the
    free memory)."""
    from common.model_io import tensor_nbytes

    if _cores() < 2 or not _onnxruntime_reads_folders():
        return False
    weights = sum(tensor_nbytes(t) or 0 for t in proto.graph.initializer)
    free = _free_bytes()
    limit = EARLY_MAX_WEIGHT_BYTES if free is None else min(EARLY_MAX_WEIGHT_BYTES, free // 8)
    return weights <= limit


class EarlyReference:
    """:func:`onnx2x.torch.verify.reference_outputs` of a (lazily loaded) model on a thread of its
    own, with one onnxruntime thread (the conversion has the other core)."""

    def __init__(self, proto: onnx.ModelProto, *, input_shapes: Optional[dict[str, Sequence[int]]] = None,
                 seed: int = 0, given: Optional[Mapping[str, np.ndarray]] = None, where: str = "model") -> None:
        from common.weight_refs import data_folder, relative_to

        folder = data_folder(proto)
        self._proto = proto if folder is None else relative_to(proto, folder)
        if self._proto is None:
            raise ValueError("the model references files outside one folder")
        self._folder = folder
        self._options = dict(input_shapes=input_shapes, seed=seed, given=given, where=where)
        self._runner: Any = None
        self._result: Optional[Reference] = None
        self._error: Optional[BaseException] = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._work, name="onnx2x-early-reference", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            runner, why = onnxruntime_reference(self._proto, threads=1, data_folder=self._folder)
            if runner is None:
                self._result = Reference(skip_reason=why)
                return
            self._runner = runner
            if self._cancelled.is_set():
                return
            self._result = reference_outputs(self._proto, runner=runner, **self._options)
        except BaseException as exc:  # handed to the caller's thread by result()
            self._error = exc
        finally:
            self._runner = None  # onnxruntime's copy of the weights goes now, not with this object

    def result(self) -> Reference:
        """Wait for the reference; raise what the thread raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Stop onnxruntime's run, if one is under way, and wait for the thread to end."""
        self._cancelled.set()
        runner = self._runner
        if runner is not None:
            runner.cancel()
        self._thread.join()


@contextlib.contextmanager
def early_reference(proto: Optional[onnx.ModelProto], **options: Any) -> Iterator[Optional[EarlyReference]]:
    """An :class:`EarlyReference` of ``proto`` while the block runs, when it is worth it
    (:func:`worth_running_early`); else None (also for ``proto=None``: no check). The thread is
    stopped when the block leaves early (a conversion error)."""
    early = None
    if proto is not None and worth_running_early(proto):
        try:
            early = EarlyReference(proto, **options)
        except ValueError as exc:
            log.debug("reference computed after the conversion: %s", exc)
    try:
        yield early
    finally:
        if early is not None:
            early.cancel()
