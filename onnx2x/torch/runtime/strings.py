"""String ops on numpy object arrays of ``str``.

PyTorch has no string tensor, so ONNX string values travel through the converted module as numpy
object arrays (callers pass them in that form). numpy is imported lazily, inside the functions:
only a model that really handles strings needs it, and its caller already holds numpy arrays.
Results that are numbers or booleans are returned as torch tensors so they can feed tensor ops.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import torch


def _np():
    import numpy

    return numpy


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _strings(x: Any):
    """``x`` as a numpy object array of str (accepts bytes / unicode arrays and lists)."""
    np = _np()
    arr = np.asarray(x)
    if arr.dtype != object or any(isinstance(v, bytes) for v in arr.reshape(-1)):
        flat = [_text(v) for v in arr.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        arr = out.reshape(arr.shape)
    return arr


def _object_array(items: Sequence[str], shape: Sequence[int]):
    np = _np()
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out.reshape(tuple(shape))


def to_string_array(x: Any) -> Any:
    """``x`` (bytes / unicode / object array, list or scalar) as a numpy object array of str."""
    return _strings(x)


def string_constant(items: Sequence[str], shape: Sequence[int]) -> Any:
    """A known string tensor, rebuilt from literals (how a converted module embeds one)."""
    return _object_array(items, shape)


def string_equal(x: Any, y: Any) -> torch.Tensor:
    """ONNX Equal on strings: element-wise with numpy broadcasting, as a bool tensor."""
    np = _np()
    a, b = _strings(x), _strings(y)
    hits = np.frompyfunc(lambda s, t: s == t, 2, 1)(a, b)
    return torch.from_numpy(np.asarray(hits, dtype=bool).reshape(np.broadcast(a, b).shape))


def string_where(condition: Any, x: Any, y: Any) -> Any:
    """ONNX Where on strings: pick from ``x`` where ``condition`` holds, else from ``y``."""
    np = _np()
    cond = condition.detach().cpu().numpy() if isinstance(condition, torch.Tensor) else np.asarray(condition)
    out = np.where(cond.astype(bool), _strings(x), _strings(y))
    return _strings(out)


def string_normalizer(x: Any, case_change: str, case_sensitive: int, stopwords: Sequence[str]) -> Any:
    """ONNX StringNormalizer: drop stopwords, then change case; keeps the [C] / [1, C] layout."""
    arr = _strings(x)
    items = [str(v) for v in arr.reshape(-1)]
    if stopwords:
        if case_sensitive:
            stop = set(stopwords)
            items = [s for s in items if s not in stop]
        else:
            stop = {w.lower() for w in stopwords}
            items = [s for s in items if s.lower() not in stop]
    if case_change == "LOWER":
        items = [s.lower() for s in items]
    elif case_change == "UPPER":
        items = [s.upper() for s in items]
    if not items:
        items = [""]
    shape = (1, len(items)) if arr.ndim == 2 else (len(items),)
    return _object_array(items, shape)


def string_concat(x: Any, y: Any) -> Any:
    """ONNX StringConcat: element-wise concatenation with broadcasting."""
    np = _np()
    a, b = _strings(x), _strings(y)
    out = np.frompyfunc(lambda s, t: s + t, 2, 1)(a, b)
    return np.asarray(out, dtype=object)


def string_split(x: Any, delimiter: Optional[str], maxsplit: Optional[int]) -> Any:
    """ONNX StringSplit -> (substrings padded with "", number of substrings as int64)."""
    arr = _strings(x)
    limit = -1 if maxsplit is None else int(maxsplit)
    sep = delimiter if delimiter else None
    parts = [str(s).split(sep, limit) for s in arr.reshape(-1)]
    width = max((len(p) for p in parts), default=0)
    flat = [w for p in parts for w in p + [""] * (width - len(p))]
    substrings = _object_array(flat, tuple(arr.shape) + (width,))
    counts = torch.tensor([len(p) for p in parts], dtype=torch.int64).reshape(tuple(arr.shape))
    return substrings, counts


def regex_full_match(x: Any, pattern: str) -> torch.Tensor:
    """ONNX RegexFullMatch (Python ``re`` syntax, which covers the common RE2 subset)."""
    arr = _strings(x)
    rx = re.compile(pattern)
    hits = [rx.fullmatch(str(s)) is not None for s in arr.reshape(-1)]
    return torch.tensor(hits, dtype=torch.bool).reshape(tuple(arr.shape))


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def label_encode(x: Any, keys: Sequence[Any], values: Sequence[Any], default: Any,
                 out_dtype: Optional[torch.dtype]) -> Any:
    """ai.onnx.ml LabelEncoder: map each element through ``keys -> values``, else ``default``.

    ``out_dtype`` None means string output (a numpy object array).
    """
    if isinstance(x, torch.Tensor) and out_dtype is not None:
        keys_t = torch.tensor(list(keys), dtype=x.dtype)
        vals_t = torch.tensor(list(values), dtype=out_dtype)
        hit = x.unsqueeze(-1) == keys_t
        if x.dtype.is_floating_point:
            hit = hit | (torch.isnan(x).unsqueeze(-1) & torch.isnan(keys_t))
        found = hit.any(-1)
        idx = hit.to(torch.int64).argmax(-1)
        return torch.where(found, vals_t[idx], torch.tensor(default, dtype=out_dtype))
    if isinstance(x, torch.Tensor):
        shape = tuple(x.shape)
        flat = x.reshape(-1).tolist()
    else:
        arr = _strings(x)
        shape = tuple(arr.shape)
        flat = [str(v) for v in arr.reshape(-1)]
    table = {k: v for k, v in zip(keys, values) if not _is_nan(k)}
    nan_value = next((v for k, v in zip(keys, values) if _is_nan(k)), default)
    out = [nan_value if _is_nan(v) else table.get(v, default) for v in flat]
    if out_dtype is None:
        return _object_array([str(v) for v in out], shape)
    return torch.tensor(out, dtype=out_dtype).reshape(shape)
