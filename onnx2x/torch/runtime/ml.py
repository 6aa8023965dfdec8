"""Classic machine-learning ops as tensor code: tree ensembles and n-gram (TF-IDF) counting.

Both are table-driven: the converter turns the ONNX attributes into index tensors once, and the
code here only gathers, compares and scatters, so a batch runs as a few vectorized ops per tree
level or per n-gram length instead of a Python loop per sample.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

# Tree node comparison modes (ai.onnx.ml TreeEnsemble numbering).
_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)
# Aggregate functions and post transforms (TreeEnsemble numbering).
_AVERAGE, _SUM, _MIN, _MAX = range(4)
_NONE, _SOFTMAX, _LOGISTIC, _SOFTMAX_ZERO, _PROBIT = range(5)


def tree_leaves(x: torch.Tensor, feature: torch.Tensor, split: torch.Tensor, mode: torch.Tensor,
                missing_true: torch.Tensor, next_true: torch.Tensor, next_false: torch.Tensor,
                members: Optional[torch.Tensor], roots: torch.Tensor, depth: int) -> torch.Tensor:
    """Walk every tree for every row of ``x`` [B, F]: the reached leaf slot per (row, tree) [B, T].

    Nodes and leaves share one index space; a leaf points to itself, so ``depth`` steps (the
    longest root-to-leaf path) leave every walk on its leaf. Comparisons run in float64, which
    holds float16/32/64 features and splits exactly.
    """
    xs = x.reshape(x.shape[0], -1).to(torch.float64)
    cur = roots.unsqueeze(0).expand(xs.shape[0], roots.shape[0])
    for _ in range(depth):
        v = torch.gather(xs, 1, feature[cur])
        s = split[cur]
        m = mode[cur]
        cond = torch.where(m == _LEQ, v <= s,
               torch.where(m == _LT, v < s,
               torch.where(m == _GTE, v >= s,
               torch.where(m == _GT, v > s,
               torch.where(m == _EQ, v == s, v != s)))))
        if members is not None:
            cond = torch.where(m == _MEMBER, (members[cur] == v.unsqueeze(-1)).any(-1), cond)
        cond = cond | (missing_true[cur] & torch.isnan(v))
        cur = torch.where(cond, next_true[cur], next_false[cur])
    return cur


def tree_aggregate(leaves: torch.Tensor, leaf_values: torch.Tensor, leaf_mask: torch.Tensor,
                   aggregate: int, n_trees: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine the leaves' target values [slots, K] over the trees of each row.

    Returns the scores [B, K] and which targets any reached leaf contributes to (``leaf_mask``
    says which targets a leaf feeds); a target nothing reached scores 0.
    """
    vals = leaf_values[leaves]  # [B, T, K]
    mask = leaf_mask[leaves]
    hit = mask.any(1)
    if aggregate == _SUM:
        return vals.sum(1), hit
    if aggregate == _AVERAGE:
        return vals.sum(1) / n_trees, hit
    if aggregate == _MIN:
        best = torch.where(mask, vals, torch.full_like(vals, math.inf)).amin(1)
    else:
        best = torch.where(mask, vals, torch.full_like(vals, -math.inf)).amax(1)
    return torch.where(hit, best, torch.zeros_like(best)), hit


def post_transform(scores: torch.Tensor, transform: int) -> torch.Tensor:
    """ai.onnx.ml post transforms on [B, K] scores."""
    if transform == _SOFTMAX:
        return torch.softmax(scores, dim=-1)
    if transform == _LOGISTIC:
        return torch.sigmoid(scores)
    if transform == _SOFTMAX_ZERO:  # softmax over the non-zero scores; zeros stay zero
        nonzero = scores != 0
        shifted = scores - torch.where(nonzero, scores, torch.full_like(scores, -math.inf)).amax(-1, keepdim=True)
        e = torch.where(nonzero, torch.exp(shifted), torch.zeros_like(scores))
        total = e.sum(-1, keepdim=True)
        return torch.where(total > 0, e / torch.where(total > 0, total, torch.ones_like(total)), e)
    if transform == _PROBIT:
        return math.sqrt(2.0) * torch.erfinv(2.0 * scores - 1.0)
    return scores


def tree_ensemble(x: torch.Tensor, feature: torch.Tensor, split: torch.Tensor, mode: torch.Tensor,
                  missing_true: torch.Tensor, next_true: torch.Tensor, next_false: torch.Tensor,
                  members: Optional[torch.Tensor], roots: torch.Tensor, depth: int,
                  leaf_values: torch.Tensor, leaf_mask: torch.Tensor, aggregate: int,
                  base_values: Optional[torch.Tensor], transform: int, out_dtype: torch.dtype) -> torch.Tensor:
    """A tree ensemble's scores [B, K]: walk, aggregate, add base values, post-transform.

    As in onnxruntime, base values are added only to targets some reached leaf scores.
    """
    leaves = tree_leaves(x, feature, split, mode, missing_true, next_true, next_false, members, roots, depth)
    scores, hit = tree_aggregate(leaves, leaf_values, leaf_mask, aggregate, int(roots.shape[0]))
    if base_values is not None:
        scores = torch.where(hit, scores + base_values, scores)
    return post_transform(scores, transform).to(out_dtype)


# --- TfIdfVectorizer ---------------------------------------------------------------------------
def _token_ids(x: Any, tokens: Any) -> torch.Tensor:
    """Input tokens -> vocabulary ids in [0, V); tokens outside the pool get V.

    ``tokens`` is a sorted int64 tensor (integer input) or a tuple of str (string input, ``x``
    then being a numpy array of str/bytes).
    """
    if isinstance(tokens, torch.Tensor):
        xi = x.to(torch.int64)
        n = tokens.shape[0]
        if n == 0:
            return torch.zeros_like(xi)
        pos = torch.searchsorted(tokens, xi).clamp(max=n - 1)
        return torch.where(tokens[pos] == xi, pos, torch.full_like(pos, n))
    table = {t: i for i, t in enumerate(tokens)}
    flat = [table.get(v.decode("utf-8") if isinstance(v, bytes) else str(v), len(tokens)) for v in x.reshape(-1)]
    return torch.tensor(flat, dtype=torch.int64).reshape(tuple(x.shape))


def tfidf_vectorize(x: Any, tokens: Any,
                    grams: Sequence[tuple[int, Sequence[int], torch.Tensor, torch.Tensor, torch.Tensor]],
                    base: int, output_size: int, idf_weights: Optional[torch.Tensor], idf: bool) -> torch.Tensor:
    """ONNX TfIdfVectorizer over a [C] or [B, C] input -> float32 [output_size] / [B, output_size].

    ``grams`` holds, per n-gram length n: the skip distances counted, the pool n-grams either as
    sorted keys ``sum(id_k * base**k)`` (1-D) or as an id matrix [P, n] (2-D, when keys would
    overflow int64), the output column of each pool n-gram and what one occurrence adds there
    (1, or the n-gram's weight under TFIDF). Under IDF a column holds its weight (``idf_weights``,
    or 1) when any of its n-grams occurs, else 0.
    """
    ids = _token_ids(x, tokens)
    rows = ids.reshape(1, -1) if ids.dim() < 2 else ids
    acc = torch.zeros(rows.shape[0], output_size, dtype=torch.float32)
    length = rows.shape[1]
    for n, skips, pool, columns, values in grams:
        for d in skips:
            width = length - d * (n - 1)
            if width <= 0 or pool.shape[0] == 0:
                continue
            parts = [rows[:, k * d:k * d + width] for k in range(n)]
            if pool.dim() == 1:  # keys: one searchsorted per window
                key = parts[0].clone()
                scale = 1
                for part in parts[1:]:
                    scale *= base
                    key = key + part * scale
                pos = torch.searchsorted(pool, key).clamp(max=pool.shape[0] - 1)
                hit = (pool[pos] == key).to(torch.float32)
                acc.scatter_add_(1, columns[pos], hit * values[pos])
            else:  # id matrix: compare every window with every pool n-gram
                win = torch.stack(parts, -1)  # [B, W, n]
                hits = (win.unsqueeze(2) == pool).all(-1).sum(1).to(torch.float32)  # [B, P]
                acc.index_add_(1, columns, hits * values)
    if idf:
        present = (acc > 0).to(torch.float32)
        acc = present * idf_weights if idf_weights is not None else present
    return acc.reshape(output_size) if ids.dim() < 2 else acc
