"""Compare a candidate's outputs with a reference's, with figures that say *how* they differ.

A single mse threshold hides the cases that matter (one wrong channel in a big tensor, a wrong
dtype, a transposed shape), so every output gets: max abs error, max relative error, mse, cosine
similarity, how many elements (and which share) are out of tolerance, and shape and dtype checks.

An element is within tolerance when ``|candidate - reference| <= atol + rtol * |reference|``
(numpy's ``allclose`` rule). NaN matches NaN and an infinity matches the same infinity.

Default tolerances, by the less precise dtype of the pair (see :data:`DEFAULT_TOLERANCES`):

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


@dataclass(frozen=True)
class Tolerance:
    """``|cand - ref| <= atol + rtol * |ref|`` element-wise."""

    rtol: float
    atol: float

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

    ``max_rel`` is ``max |cand - ref| / max(|ref|, atol)`` (elements near zero are judged
    relative to ``atol``, not to zero). Figures are ``None`` when the shapes make an element-wise
    comparison impossible.
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

    @property
    def ok(self) -> bool:
        if self.cand_shape is None or not self.shape_ok:
            return False
        if self.check_dtype and not self.dtype_ok:
            return False
        return self.n_bad == 0

    @property
    def within_tolerance(self) -> bool:
        """Values agree (shape and dtype aside)."""
        return self.n_bad == 0 if self.n_bad is not None else False

    def problem(self) -> str:
        """One phrase saying why it failed ('' when ok)."""
        if self.cand_shape is None or (self.n_bad is None and self.message):
            return self.message or "missing in candidate"
        if not self.shape_ok:
            return f"shape {self.cand_shape} != reference {self.ref_shape}"
        if self.check_dtype and not self.dtype_ok:
            return f"dtype {self.cand_dtype} != reference {self.ref_dtype}"
        if self.n_bad:
            return (f"{self.n_bad} of {self.n_elements} elements ({100 * (self.bad_fraction or 0):.3g}%) "
                    f"out of tolerance ({Tolerance(self.rtol, self.atol)})")
        return ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ref_shape"] = list(self.ref_shape)
        data["cand_shape"] = None if self.cand_shape is None else list(self.cand_shape)
        data["ok"] = self.ok
        for key in ("max_abs", "max_rel", "mse", "cosine", "bad_fraction"):
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
    """Per-output comparisons of one candidate with one reference."""

    outputs: list[OutputComparison] = field(default_factory=list)

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

    def worst_max_abs(self) -> Optional[float]:
        values = [o.max_abs for o in self.outputs if o.max_abs is not None]
        return max(values) if values else None

    def summary(self) -> str:
        """One line: 'all N outputs within tolerance' or what failed first."""
        bad = self.failed
        if not bad:
            return f"all {len(self.outputs)} outputs within tolerance"
        return f"{len(bad)} of {len(self.outputs)} outputs differ; {bad[0].name}: {bad[0].problem()}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "outputs": [o.to_dict() for o in self.outputs]}


def compare_arrays(
    reference: Any,
    candidate: Any,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    name: str = "",
    check_dtype: bool = True,
    cand_name: Optional[str] = None,
) -> OutputComparison:
    """Compare one tensor pair; see the module docstring for the rule and the defaults."""
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
    _fill_figures(result, ref.reshape(-1), cand.reshape(-1), tol)
    return result


def _as_float64(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    if a.dtype.kind in "biuf" or (BFLOAT16 is not None and a.dtype == BFLOAT16):
        return a.astype(np.float64)
    raise TypeError(a.dtype)


def _fill_figures(result: OutputComparison, ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> None:
    n = ref.size
    if n == 0:
        result.max_abs = result.max_rel = result.mse = 0.0
        result.cosine = 1.0
        result.n_bad = 0
        result.bad_fraction = 0.0
        return
    try:
        r = _as_float64(ref)
        c = _as_float64(cand)
    except TypeError:  # strings, objects: equality only
        bad = int(np.count_nonzero(ref != cand))
        result.n_bad, result.bad_fraction = bad, bad / n
        result.message = "non-numeric: compared for equality only"
        return
    exact = tol == EXACT and ref.dtype.kind in "biu" and cand.dtype.kind in "biu"
    if exact:  # integers: equality on the original values (float64 would round int64)
        bad_mask = ref != cand
    else:
        same_special = (np.isnan(r) & np.isnan(c)) | (np.isinf(r) & (r == c))
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.isfinite(r) & np.isfinite(c) & (np.abs(c - r) <= tol.atol + tol.rtol * np.abs(r))
        bad_mask = ~(close | same_special)
    n_bad = int(np.count_nonzero(bad_mask))
    result.n_bad = n_bad
    result.bad_fraction = n_bad / n

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite = np.isfinite(r) & np.isfinite(c)
        special_mismatch = bool(np.any(~finite & bad_mask))
        diff = np.abs(c[finite] - r[finite])
        if diff.size:
            max_abs = float(diff.max())
            denom = np.maximum(np.abs(r[finite]), max(tol.atol, 1e-12))
            max_rel = float((diff / denom).max())
            mse = float(np.mean(diff.astype(np.float64) ** 2))
        else:
            max_abs = max_rel = mse = 0.0
        if special_mismatch:  # a NaN or infinity on one side only
            max_abs = max_rel = mse = math.inf
        result.max_abs, result.max_rel, result.mse = max_abs, max_rel, mse
        result.cosine = _cosine(r[finite], c[finite]) if not special_mismatch else math.nan


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


def compare(
    reference: ArraysLike,
    candidate: ArraysLike,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    check_dtype: bool = True,
) -> ComparisonReport:
    """Compare every reference output with its candidate.

    Both sides are dicts ``{name: array}`` or sequences of arrays. Dicts with the same names are
    matched by name; otherwise outputs are matched by position (converters keep output order but
    not always names), and the reference's names label the rows. An output present on one side
    only is reported as failed.
    """
    ref_items = _as_items(reference, "output_")
    cand_items = _as_items(candidate, "output_")
    report = ComparisonReport()
    cand_by_name = dict(cand_items)
    by_name = isinstance(reference, Mapping) and isinstance(candidate, Mapping) and \
        {k for k, _ in ref_items} == set(cand_by_name)
    for i, (name, ref) in enumerate(ref_items):
        if by_name:
            cname, cand = name, cand_by_name[name]
        elif i < len(cand_items):
            cname, cand = cand_items[i]
        else:
            cname, cand = None, None
        if cand is None and cname is None:
            r = to_numpy(ref)
            tol = tolerance_for(r.dtype, rtol=rtol, atol=atol)
            report.outputs.append(OutputComparison(
                name=name, ref_shape=tuple(r.shape), cand_shape=None, ref_dtype=dtype_name(r.dtype),
                cand_dtype=None, rtol=tol.rtol, atol=tol.atol, shape_ok=False, dtype_ok=False,
                n_elements=int(r.size), message="missing in candidate", check_dtype=check_dtype))
            continue
        report.outputs.append(compare_arrays(ref, cand, rtol=rtol, atol=atol, name=name,
                                             check_dtype=check_dtype, cand_name=cname))
    if not by_name and len(cand_items) > len(ref_items):
        for cname, cand in cand_items[len(ref_items):]:
            c = to_numpy(cand)
            report.outputs.append(OutputComparison(
                name=cname, ref_shape=(), cand_shape=tuple(c.shape), ref_dtype="", cand_dtype=dtype_name(c.dtype),
                rtol=0.0, atol=0.0, shape_ok=False, dtype_ok=False, n_elements=0,
                message="extra output: not in reference", check_dtype=check_dtype))
    return report
