"""The verification criterion: when does a converted model's output count as the same as the source's?

This module is the one place where the rule is defined; every CLI, the round trip and the locator
use it. It is built for float32 graphs, after how polygraphy and ``torch.testing.assert_close``
judge outputs, and from what went wrong with a plain ``allclose`` on real models (correct
conversions refused because an element near zero had a 1e-5 error, deep models refused for an
error smaller than the model's own sensitivity):

1. **Strict where there is no rounding.** Shapes must be equal, dtypes equal (final outputs), NaN
   must face NaN and an infinity the same infinity, and integer and boolean outputs must be
   exactly equal.
2. **Scale-aware.** An element's error is judged against the magnitude of the tensor it belongs
   to, not only its own: element ``i`` agrees when

       |cand_i - ref_i| <= atol + rtol * (|ref_i| + S)

   where ``S`` is the largest finite ``|ref|`` of the tensor (its *scale*). Rounding error in a
   float32 graph grows with the values it is computed from, so a logit that cancels to nearly
   zero carries the error of its large neighbours, and ``rtol * |ref_i|`` alone would demand
   more accuracy than float32 has there. ``max_rel`` reports ``max |cand - ref| / S``.
3. **Robust to a few accumulation-order outliers.** In a tensor of at least
   :data:`OUTLIER_MIN_ELEMENTS` elements, up to :data:`OUTLIER_FRACTION` of them (at least one)
   may exceed the bound, by at most :data:`OUTLIER_FACTOR` times.
4. **Aware of the reference's own conditioning** (:mod:`.sensitivity`). When an output fails the
   rules above, the reference is run again on its inputs moved by one part in a million (a few
   float32 ulps, :data:`.sensitivity.JITTER`); if its own output moves by ``D`` then, the bound is
   widened by ``SENSITIVITY_FACTOR * D`` (integer outputs: as many mismatches as the reference
   makes against itself, times that factor). No conversion is blamed for less than the model's
   own sensitivity, and the report says in one line when a model is that sensitive.
5. **Detections are sets.** Outputs computed after a selection (NonMaxSuppression, TopK) whose
   order among near-equal scores is not defined are compared as sets of rows
   (:mod:`.rowsets`): each reference row must find a candidate row within the bound above.

Default tolerances, by the less precise dtype of the pair (:data:`DEFAULT_TOLERANCES`):

=========== ======= =======
dtype        atol    rtol
=========== ======= =======
float64      1e-8    1e-7
float32      1e-5    1e-4
float16      1e-3    1e-2
bfloat16     1e-2    2e-2
integer/bool exact   exact
=========== ======= =======

A user-given ``rtol``/``atol`` (the CLIs' ``--rtol``/``--atol``) replaces the defaults for every
floating-point output; integer and boolean outputs are always compared exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

try:  # numpy has no bfloat16; onnx and torch outputs use ml_dtypes' one when present
    import ml_dtypes

    BFLOAT16: Optional[np.dtype] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes ships with onnx
    BFLOAT16 = None

OUTLIER_MIN_ELEMENTS = 1000
OUTLIER_FRACTION = 1e-4
OUTLIER_FACTOR = 10.0
SENSITIVITY_FACTOR = 4.0


@dataclass(frozen=True)
class Tolerance:
    """``|cand - ref| <= atol + rtol * (|ref| + scale)`` element-wise (see the module docstring)."""

    rtol: float
    atol: float

    def bound(self, ref_abs: np.ndarray, scale: float) -> np.ndarray:
        return self.atol + self.rtol * (ref_abs + scale)

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


EXACT = Tolerance(0.0, 0.0)
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-8),
    "float32": Tolerance(rtol=1e-4, atol=1e-5),
    "float16": Tolerance(rtol=1e-2, atol=1e-3),
    "bfloat16": Tolerance(rtol=2e-2, atol=1e-2),
}
# coarsest first: the pair is judged by its less precise member
_PRECISION_ORDER = ("bfloat16", "float16", "float32", "float64")


def dtype_name(dtype: Any) -> str:
    """A short, framework-neutral name ('float32', 'bfloat16', 'int64', ...)."""
    dt = np.dtype(dtype)
    if BFLOAT16 is not None and dt == BFLOAT16:
        return "bfloat16"
    return dt.name


def is_float_dtype(dtype: Any) -> bool:
    name = dtype_name(dtype)
    return name in DEFAULT_TOLERANCES or np.dtype(dtype).kind in "fc"


def default_tolerance(*dtypes: Any) -> Tolerance:
    """The documented default for the least precise floating dtype among ``dtypes``; exact otherwise."""
    names = [dtype_name(d) for d in dtypes if d is not None]
    for name in _PRECISION_ORDER:
        if name in names:
            return DEFAULT_TOLERANCES[name]
    for d in dtypes:
        if d is not None and np.dtype(d).kind in "fc":  # complex, long double: as float64
            return DEFAULT_TOLERANCES["float64"]
    return EXACT


def tolerance_for(*dtypes: Any, rtol: Optional[float] = None, atol: Optional[float] = None) -> Tolerance:
    """Default tolerance for ``dtypes``, with the user's ``rtol``/``atol`` applied to float types."""
    base = default_tolerance(*dtypes)
    if base is EXACT:
        return EXACT
    return Tolerance(rtol=base.rtol if rtol is None else float(rtol), atol=base.atol if atol is None else float(atol))


def allowed_outliers(n_elements: int) -> int:
    """How many elements of a tensor may exceed the bound (by at most :data:`OUTLIER_FACTOR`)."""
    if n_elements < OUTLIER_MIN_ELEMENTS:
        return 0
    return max(1, int(n_elements * OUTLIER_FRACTION))


def to_numpy(value: Any) -> np.ndarray:
    """numpy view of a numpy array, scalar, torch tensor or MXNet NDArray."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16" and BFLOAT16 is not None:
            import torch

            return tensor.view(torch.int16).numpy().view(BFLOAT16)
        return tensor.numpy()
    if hasattr(value, "asnumpy"):  # mxnet.nd.NDArray
        return value.asnumpy()
    return np.asarray(value)


@dataclass
class OutputComparison:
    """How one candidate tensor differs from its reference.

    ``max_rel`` is ``max |cand - ref| / scale`` (the error relative to the tensor's largest finite
    magnitude; 0 for two all-zero tensors, ``None`` when the reference has no finite non-zero
    element but the candidate differs). ``worst`` is the largest error as a multiple of the
    element's bound (> 1: out of tolerance). Figures are ``None`` when the shapes make an
    element-wise comparison impossible.
    """

    name: str
    ref_shape: tuple[int, ...]
    cand_shape: Optional[tuple[int, ...]]
    ref_dtype: str
    cand_dtype: Optional[str]
    rtol: float
    atol: float
    shape_ok: bool
    dtype_ok: bool
    n_elements: int = 0
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    mse: Optional[float] = None
    cosine: Optional[float] = None
    n_bad: Optional[int] = None
    bad_fraction: Optional[float] = None
    message: str = ""
    cand_name: Optional[str] = None
    check_dtype: bool = True
    scale: Optional[float] = None
    worst: Optional[float] = None
    n_allowed: int = 0  # elements (or rows) that may exceed the bound
    special_mismatch: int = 0  # NaN or infinity on one side only, or of another sign
    widened_by: float = 0.0  # absolute amount added to every bound for the reference's sensitivity
    sensitivity: Optional[float] = None  # how far the reference moves under input jitter (max abs)
    compared_as: str = "elements"  # or "rows" (a set of detections) or "exact"

    @property
    def ok(self) -> bool:
        if self.cand_shape is None or not self.shape_ok:
            return False
        if self.check_dtype and not self.dtype_ok:
            return False
        return self.within_tolerance

    @property
    def within_tolerance(self) -> bool:
        """Values agree (shape and dtype aside)."""
        if self.n_bad is None or self.special_mismatch:
            return False
        if self.n_bad == 0:
            return True
        return self.n_bad <= self.n_allowed and (self.worst is None or self.worst <= OUTLIER_FACTOR)

    def problem(self) -> str:
        """One phrase saying why it failed ('' when ok)."""
        if self.cand_shape is None or (self.n_bad is None and self.message):
            return self.message or "missing in candidate"
        if not self.shape_ok:
            return f"shape {self.cand_shape} != reference {self.ref_shape}"
        if self.check_dtype and not self.dtype_ok:
            return f"dtype {self.cand_dtype} != reference {self.ref_dtype}"
        if self.special_mismatch:
            return f"{self.special_mismatch} NaN or infinite elements where the reference has none or others"
        if self.within_tolerance:
            return ""
        what = "rows" if self.compared_as == "rows" else "elements"
        if self.compared_as == "exact":
            return f"{self.n_bad} of {self.n_elements} elements differ"
        if self.compared_as == "rows":
            return f"{self.n_bad} of {self.n_elements} detection rows have no match ({self.message})"
        size = f"{self.max_rel:.3g} of the output's scale" if self.max_rel is not None else f"max-abs {self.max_abs:.3g}"
        return (f"{self.n_bad} of {self.n_elements} {what} ({100 * (self.bad_fraction or 0):.3g}%) out of tolerance, "
                f"error up to {size} ({Tolerance(self.rtol, self.atol)})")

    def figures(self) -> str:
        """'max error 3.1e-06 of scale 12.4 (max-abs 3.8e-05)' — for one verification line."""
        if self.compared_as == "exact" and self.n_bad is not None:  # integers, booleans, strings
            return "equal" if self.n_bad == 0 else f"{self.n_bad} of {self.n_elements} elements differ"
        if self.max_abs is None:
            return self.problem() or "not compared"
        if self.compared_as == "rows":
            return self.message
        else:
            head = (f"max error {self.max_rel:.2g} of scale {self.scale:.3g}" if self.max_rel is not None and self.scale
                    else f"max-abs {self.max_abs:.3g}")
        return head + (f" (max-abs {self.max_abs:.3g})" if self.compared_as != "rows" and self.max_rel is not None
                       and self.scale else "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ref_shape"] = list(self.ref_shape)
        data["cand_shape"] = None if self.cand_shape is None else list(self.cand_shape)
        data["ok"] = self.ok
        for key in ("max_abs", "max_rel", "mse", "cosine", "bad_fraction", "scale", "worst", "widened_by",
                    "sensitivity"):
            data[key] = _json_float(data[key])
        del data["check_dtype"]
        return data


def _json_float(x: Optional[float]) -> Optional[Union[float, str]]:
    """JSON has no inf/nan: write them as strings."""
    if x is None:
        return None
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


@dataclass
class ComparisonReport:
    """Per-output comparisons of one candidate with one reference.

    ``notes`` holds one line per output whose judgement took the reference's own sensitivity
    into account (see :mod:`.sensitivity`).
    """

    outputs: list[OutputComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def failed(self) -> list[OutputComparison]:
        return [o for o in self.outputs if not o.ok]

    def __iter__(self) -> Iterator[OutputComparison]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, key: Union[int, str]) -> OutputComparison:
        if isinstance(key, int):
            return self.outputs[key]
        for o in self.outputs:
            if o.name == key:
                return o
        raise KeyError(key)

    def replace(self, comparison: OutputComparison) -> None:
        """Put ``comparison`` in place of the row of the same name."""
        for k, o in enumerate(self.outputs):
            if o.name == comparison.name:
                self.outputs[k] = comparison
                return
        raise KeyError(comparison.name)

    def worst_max_abs(self) -> Optional[float]:
        values = [o.max_abs for o in self.outputs if o.max_abs is not None]
        return max(values) if values else None

    def worst_max_rel(self) -> Optional[float]:
        """The largest error relative to its output's scale (what docs/MODEL_ZOO.md reports)."""
        values = [o.max_rel for o in self.outputs if o.max_rel is not None and o.compared_as == "elements"]
        return max(values) if values else None

    def summary(self) -> str:
        """One line: 'all N outputs within tolerance' or what failed first."""
        bad = self.failed
        if not bad:
            return f"all {len(self.outputs)} outputs within tolerance"
        return f"{len(bad)} of {len(self.outputs)} outputs differ; {bad[0].name}: {bad[0].problem()}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "outputs": [o.to_dict() for o in self.outputs], "notes": list(self.notes),
                "worst_max_rel": _json_float(self.worst_max_rel())}


def compare_arrays(
    reference: Any,
    candidate: Any,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    name: str = "",
    check_dtype: bool = True,
    cand_name: Optional[str] = None,
    widen: float = 0.0,
    allowed_mismatches: int = 0,
) -> OutputComparison:
    """Compare one tensor pair by the module's criterion.

    ``widen`` is added to every element's bound (the reference's sensitivity, already multiplied
    by :data:`SENSITIVITY_FACTOR`); ``allowed_mismatches`` is how many elements of an integer or
    boolean output may differ for the same reason.
    """
    ref = to_numpy(reference)
    cand = to_numpy(candidate)
    tol = tolerance_for(ref.dtype, cand.dtype, rtol=rtol, atol=atol)
    result = OutputComparison(
        name=name, ref_shape=tuple(int(d) for d in ref.shape), cand_shape=tuple(int(d) for d in cand.shape),
        ref_dtype=dtype_name(ref.dtype), cand_dtype=dtype_name(cand.dtype), rtol=tol.rtol, atol=tol.atol,
        shape_ok=ref.shape == cand.shape, dtype_ok=dtype_name(ref.dtype) == dtype_name(cand.dtype),
        n_elements=int(ref.size), check_dtype=check_dtype,
        cand_name=cand_name if cand_name not in (None, name) else None,
    )
    if ref.size != cand.size:
        result.message = f"{cand.size} elements, reference has {ref.size}"
        return result
    _fill_figures(result, ref.reshape(-1), cand.reshape(-1), tol, widen, allowed_mismatches)
    return result


def _as_float64(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    if a.dtype.kind in "biuf" or (BFLOAT16 is not None and a.dtype == BFLOAT16):
        return a.astype(np.float64)
    raise TypeError(a.dtype)


def _fill_figures(result: OutputComparison, ref: np.ndarray, cand: np.ndarray, tol: Tolerance, widen: float,
                  allowed_mismatches: int) -> None:
    n = ref.size
    result.widened_by = float(widen)
    if n == 0:
        result.max_abs = result.max_rel = result.mse = result.scale = 0.0
        result.cosine = 1.0
        result.n_bad = 0
        result.bad_fraction = 0.0
        result.worst = 0.0
        return
    try:
        r = _as_float64(ref)
        c = _as_float64(cand)
    except TypeError:  # strings, objects: equality only
        bad = int(np.count_nonzero(ref != cand))
        result.n_bad, result.bad_fraction = bad, bad / n
        result.n_allowed = allowed_mismatches
        result.compared_as = "exact"
        result.message = "non-numeric: compared for equality only"
        return
    exact = tol == EXACT and ref.dtype.kind in "biu" and cand.dtype.kind in "biu"
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite_r, finite_c = np.isfinite(r), np.isfinite(c)
        finite = finite_r & finite_c
        magnitude = np.abs(r[finite_r])
        scale = float(magnitude.max()) if magnitude.size else 0.0
        diff = np.abs(c[finite] - r[finite])
        result.scale = scale
        if exact:  # integers: equality on the original values (float64 would round int64)
            bad_mask = ref != cand
            result.compared_as = "exact"
            result.n_allowed = allowed_mismatches
            result.worst = None
        else:
            same_special = (np.isnan(r) & np.isnan(c)) | (np.isinf(r) & (r == c))
            result.special_mismatch = int(np.count_nonzero(~finite & ~same_special))
            bound = tol.bound(np.abs(r[finite]), scale) + widen
            ratio = diff / np.maximum(bound, np.finfo(np.float64).tiny)
            ratio[diff == 0] = 0.0
            bad_mask = np.zeros(n, bool)
            bad_mask[np.flatnonzero(finite)] = ratio > 1.0
            result.worst = float(ratio.max()) if ratio.size else 0.0
            result.n_allowed = allowed_outliers(n)
        result.n_bad = int(np.count_nonzero(bad_mask)) + result.special_mismatch
        result.bad_fraction = result.n_bad / n
        if diff.size:
            max_abs = float(diff.max())
            mse = float(np.mean(diff ** 2))
        else:
            max_abs = mse = 0.0
        result.max_abs, result.mse = max_abs, mse
        result.max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else None)
        result.cosine = _cosine(r[finite], c[finite])
        if result.special_mismatch:  # a NaN or infinity on one side only: no finite figure describes it
            result.max_abs = result.max_rel = result.mse = math.inf
            result.cosine = math.nan


def _cosine(r: np.ndarray, c: np.ndarray) -> float:
    if r.dtype.kind == "c" or c.dtype.kind == "c":
        r, c = np.abs(r), np.abs(c)
    # Scale first so that huge values do not overflow the dot product.
    scale = max(float(np.max(np.abs(r), initial=0.0)), float(np.max(np.abs(c), initial=0.0)))
    if scale == 0.0:
        return 1.0
    rs, cs = r / scale, c / scale
    nr, nc = float(np.linalg.norm(rs)), float(np.linalg.norm(cs))
    if nr == 0.0 and nc == 0.0:
        return 1.0
    if nr == 0.0 or nc == 0.0:
        return 0.0
    return float(np.dot(rs, cs) / (nr * nc))


ArraysLike = Union[Mapping[str, Any], Sequence[Any]]


def _as_items(values: ArraysLike, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(values, Mapping):
        return [(str(k), v) for k, v in values.items()]
    if isinstance(values, np.ndarray) or hasattr(values, "detach"):
        return [(f"{prefix}0", values)]
    return [(f"{prefix}{i}", v) for i, v in enumerate(values)]


def pair_outputs(reference: ArraysLike, candidate: ArraysLike) -> list[tuple[str, Any, Optional[str], Any]]:
    """``(name, reference, candidate name, candidate)`` per reference output; see :func:`compare`.
    Extra candidate outputs come last with ``name`` set to ``None``."""
    ref_items = _as_items(reference, "output_")
    cand_items = _as_items(candidate, "output_")
    cand_by_name = dict(cand_items)
    by_name = isinstance(reference, Mapping) and isinstance(candidate, Mapping) and \
        {k for k, _ in ref_items} == set(cand_by_name)
    pairs: list[tuple[Any, Any, Optional[str], Any]] = []
    for i, (name, ref) in enumerate(ref_items):
        if by_name:
            pairs.append((name, ref, name, cand_by_name[name]))
        elif i < len(cand_items):
            pairs.append((name, ref, *cand_items[i]))
        else:
            pairs.append((name, ref, None, None))
    if not by_name and len(cand_items) > len(ref_items):
        pairs += [(None, None, cname, cand) for cname, cand in cand_items[len(ref_items):]]
    return pairs


def compare(
    reference: ArraysLike,
    candidate: ArraysLike,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    check_dtype: bool = True,
) -> ComparisonReport:
    """Compare every reference output with its candidate, element by element.

    Both sides are dicts ``{name: array}`` or sequences of arrays. Dicts with the same names are
    matched by name; otherwise outputs are matched by position (converters keep output order but
    not always names), and the reference's names label the rows. An output present on one side
    only is reported as failed. :func:`.judge.judge_outputs` adds the row-set comparison of
    detections and the reference's sensitivity on top of this.
    """
    report = ComparisonReport()
    for name, ref, cname, cand in pair_outputs(reference, candidate):
        if name is None:
            c = to_numpy(cand)
            report.outputs.append(OutputComparison(
                name=str(cname), ref_shape=(), cand_shape=tuple(c.shape), ref_dtype="", cand_dtype=dtype_name(c.dtype),
                rtol=0.0, atol=0.0, shape_ok=False, dtype_ok=False, n_elements=0,
                message="extra output: not in reference", check_dtype=check_dtype))
        elif cname is None:
            r = to_numpy(ref)
            tol = tolerance_for(r.dtype, rtol=rtol, atol=atol)
            report.outputs.append(OutputComparison(
                name=name, ref_shape=tuple(r.shape), cand_shape=None, ref_dtype=dtype_name(r.dtype),
                cand_dtype=None, rtol=tol.rtol, atol=tol.atol, shape_ok=False, dtype_ok=False,
                n_elements=int(r.size), message="missing in candidate", check_dtype=check_dtype))
        else:
            report.outputs.append(compare_arrays(ref, cand, rtol=rtol, atol=atol, name=name,
                                                 check_dtype=check_dtype, cand_name=cname))
    return report
