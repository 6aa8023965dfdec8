"""How much the reference moves when its inputs move by less than float32 can tell apart.

A correct float32 conversion computes every operation in another order than the source
framework: each op adds a rounding error of a few ulps, and the network then amplifies those
errors as it amplifies any small perturbation. A well-conditioned network barely reacts; a
dilated segmentation backbone, a random-init deep net or a detector that sorts near-equal
scores reacts strongly. That reaction is a property of the model, not of the conversion, and it
can be measured without knowing anything about the graph: run the reference again with every
float input multiplied by ``1 ± JITTER`` (one part in a million, about 8 float32 ulps) and see how
far its outputs move. :mod:`.judge` widens an output's tolerance by a multiple of that movement,
so no conversion is blamed for less than the model's own sensitivity.

Two runs with opposite signs of the same seeded pattern are taken; an output's sensitivity is
the larger of the two movements. A third run on the unchanged inputs tells a reference that is
not deterministic (random ops such as Dropout left in training mode) from a sensitive one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .compare import to_numpy

log = logging.getLogger(__name__)

JITTER = 2.0 ** -20  # ~9.5e-7: one part in a million, 8 float32 ulps
RerunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


def jitter_inputs(inputs: Mapping[str, Any], sign: float, *, seed: int = 0,
                  amount: float = JITTER) -> dict[str, np.ndarray]:
    """``inputs`` with every floating-point element multiplied by ``1 + sign * amount * (±1)``.

    Integer and boolean inputs (indices, masks, token ids) are left unchanged: they have no
    rounding to imitate.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in inputs.items():
        array = to_numpy(value)
        if array.dtype.kind != "f" or array.size == 0:
            out[name] = array
            continue
        signs = rng.choice(np.array([-1.0, 1.0]), size=array.shape)
        out[name] = (array.astype(np.float64) * (1.0 + sign * amount * signs)).astype(array.dtype)
    return out


@dataclass
class Sensitivity:
    """The reference's outputs on jittered inputs (one dict per run), and what failed if it could not run."""

    samples: list[dict[str, np.ndarray]] = field(default_factory=list)
    error: Optional[str] = None
    amount: float = JITTER
    repeat: dict[str, np.ndarray] = field(default_factory=dict)  # a run on the very same inputs

    def unsteady(self, name: str, reference: Any) -> Optional[float]:
        """How far output ``name`` moved between two runs on identical inputs (0: deterministic)."""
        if name not in self.repeat:
            return None
        ref, again = to_numpy(reference), self.repeat[name]
        if again.shape != ref.shape:
            return float("inf")
        if again.dtype.kind != "f" or ref.dtype.kind != "f":
            return float(np.count_nonzero(again != ref))
        with np.errstate(invalid="ignore", over="ignore"):
            a, b = again.astype(np.float64), ref.astype(np.float64)
            finite = np.isfinite(a) & np.isfinite(b)
            return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))

    @property
    def available(self) -> bool:
        return bool(self.samples)

    def values(self, name: str) -> list[np.ndarray]:
        return [s[name] for s in self.samples if name in s]

    def max_change(self, name: str, reference: Any) -> Optional[float]:
        """Largest ``|jittered - reference|`` over finite elements of output ``name`` (None: unknown)."""
        ref = to_numpy(reference)
        worst: Optional[float] = None
        for sample in self.values(name):
            if sample.shape != ref.shape:
                return None
            with np.errstate(invalid="ignore", over="ignore"):
                a, b = sample.astype(np.float64), ref.astype(np.float64)
                finite = np.isfinite(a) & np.isfinite(b)
                change = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))
            worst = change if worst is None else max(worst, change)
        return worst

    def mismatches(self, name: str, reference: Any) -> Optional[int]:
        """How many elements of output ``name`` change at all (for integer outputs)."""
        ref = to_numpy(reference)
        worst: Optional[int] = None
        for sample in self.values(name):
            if sample.shape != ref.shape:
                return None
            count = int(np.count_nonzero(sample != ref))
            worst = count if worst is None else max(worst, count)
        return worst


def measure(rerun: RerunFn, inputs: Mapping[str, Any], *, seed: int = 0, amount: float = JITTER) -> Sensitivity:
    """Run ``rerun`` on ``inputs`` jittered both ways; a failure is recorded, never raised."""
    result = Sensitivity(amount=amount)
    for sign in (0.0, 1.0, -1.0):
        try:
            outputs = rerun(jitter_inputs(inputs, sign, seed=seed + 7919, amount=amount))
        except Exception as exc:  # the measurement is a help to the judgement: never replace it
            result.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            log.info("sensitivity run failed: %s", result.error)
            return result
        sample = {k: to_numpy(v) for k, v in outputs.items()}
        if sign == 0.0:
            result.repeat = sample
        result.samples.append(sample)
    return result
