"""String ops on numpy object arrays of ``str``.

PyTorch has no string tensor, so ONNX string values travel through the converted module as numpy
object arrays (callers pass them in that form). numpy is imported lazily, inside the functions:
only a model that really handles strings needs it, and its caller already holds numpy arrays.
Results that are numbers or booleans are returned as torch tensors so they can feed tensor ops.
"""
from __future__ import annotations

import math
import re
import unicodedata
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


def _change_case(text: str, upper: bool) -> str:
    """Character by character, as onnxruntime's towupper/towlower: where Python maps a character
    to several, the C library keeps one (İ -> i: the base letter without its combining dot) or
    leaves it as it is (ß, whose upper case SS is two letters)."""
    out = []
    for c in text:
        mapped = c.upper() if upper else c.lower()
        if len(mapped) > 1:
            mapped = mapped[0] if all(unicodedata.combining(m) for m in mapped[1:]) else c
        out.append(mapped)
    return "".join(out)


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
    if case_change in ("LOWER", "UPPER"):
        items = [_change_case(s, case_change == "UPPER") for s in items]
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


_START_MARK, _END_MARK = "\x02", "\x03"


def _split_by(pieces: list[str], separator: "re.Pattern[str]", mincharnum: int) -> list[str]:
    """The text between ``separator``'s matches in each piece, at least ``mincharnum`` long."""
    tokens = []
    for text in pieces:
        start = 0
        while True:
            match = separator.search(text, start)
            if match is None:
                if len(text) - start >= mincharnum:
                    tokens.append(text[start:])
                break
            if match.start() - start >= mincharnum:
                tokens.append(text[start:match.start()])
            start = match.end() if match.end() > match.start() else match.start() + 1
    return tokens


def _token_matches(text: str, expression: "re.Pattern[str]", mincharnum: int) -> list[str]:
    """Successive matches of ``expression`` at least ``mincharnum`` long; a shorter match moves
    the search one character past its start."""
    tokens: list[str] = []
    if len(text) < mincharnum:
        return tokens
    start = 0
    while start <= len(text):
        match = expression.search(text, start)
        if match is None:
            break
        if match.end() - match.start() >= mincharnum:
            tokens.append(match.group())
            start = match.end()
        else:
            start = match.start() + 1
    return tokens


def tokenize(x: Any, separators: Optional[Sequence[str]], expression: Optional[str], mincharnum: int,
             mark: bool, pad: str) -> Any:
    """com.microsoft Tokenizer (skl2onnx's CountVectorizer / TfidfVectorizer): each string of a
    [C] or [N, C] input -> its tokens on a new last axis, padded with ``pad``.

    Tokens are the matches of ``expression``, or the text left between matches of each
    ``separators`` pattern in turn; one empty separator, or the expression ".", gives characters.
    Patterns are onnxruntime's RE2 ones read by Python's ``re`` with ASCII classes (RE2's ``\\w``,
    ``\\b`` and ``\\d`` are ASCII). ``mark`` wraps each row's tokens in \\x02 ... \\x03.
    """
    arr = _strings(x)
    texts = [str(v) for v in arr.reshape(-1)]
    chars = (separators is not None and list(separators) == [""]) or expression == "."
    if chars:
        rows = [list(t) for t in texts]
    elif expression is not None:
        rx = re.compile(expression, re.ASCII)
        rows = [_token_matches(t, rx, mincharnum) for t in texts]
    else:
        patterns = [re.compile(sep, re.ASCII) for sep in separators or ()]
        rows = []
        for t in texts:
            row = [t]
            for sep in patterns:
                row = _split_by(row, sep, mincharnum)
                if not row:
                    break
            rows.append(row)
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return _object_array([], tuple(arr.shape) + (0,))
    flat: list[str] = []
    for row in rows:
        marked = [_START_MARK, *row, _END_MARK] if mark else row
        flat.extend(marked + [pad] * (width - len(row)))
    return _object_array(flat, tuple(arr.shape) + (width + 2 * mark,))


def reshape_strings(x: Any, shape: Any, allowzero: int) -> Any:
    """ONNX Reshape of a string array (0 copies the input's size unless ``allowzero``)."""
    arr = _strings(x)
    dims = [int(d) for d in (shape.tolist() if isinstance(shape, torch.Tensor) else shape)]
    if not allowzero:
        dims = [arr.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return arr.reshape(dims)


def flatten_strings(x: Any, axis: int) -> Any:
    """ONNX Flatten of a string array: [prod(shape[:axis]), prod(shape[axis:])]."""
    arr = _strings(x)
    axis = axis + arr.ndim if axis < 0 else axis
    return arr.reshape(math.prod(arr.shape[:axis]), math.prod(arr.shape[axis:]))


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
