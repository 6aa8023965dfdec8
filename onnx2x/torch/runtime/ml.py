"""Classic machine-learning ops as tensor code: tree ensembles, linear classifiers, support vector
machines, row normalization, one-hot categories and n-gram (TF-IDF) counting.

Both are table-driven: the converter turns the ONNX attributes into index tensors once, and the
code here only gathers, compares and scatters, so a batch runs as a few vectorized ops per tree
level or per n-gram length instead of a Python loop per sample.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
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


# --- classifiers (labels and scores as onnxruntime writes them) -----------------------------------
def class_labels(index: torch.Tensor, labels: Any) -> Any:
    """``labels[index]``: an int64 tensor, or for string labels (a tuple) a numpy object array."""
    if isinstance(labels, torch.Tensor):
        return labels[index]
    return np.asarray(labels, dtype=object)[index.numpy()]


def _binary_scores(score: torch.Tensor, transform: int, margin: bool) -> torch.Tensor:
    """Two score columns from one: ``[1 - s, s]`` for probability-like votes, ``[-s, s]`` for a
    margin (``[logistic(-s), logistic(s)]`` under LOGISTIC); other transforms do not apply."""
    if not margin:
        return torch.stack([1 - score, score], -1)
    if transform == _LOGISTIC:
        return torch.stack([torch.sigmoid(-score), torch.sigmoid(score)], -1)
    return torch.stack([-score, score], -1)


def _complement_columns(score: torch.Tensor, transform: int) -> torch.Tensor:
    """``[1 - p, p]`` with p the score, or its logistic under LOGISTIC: how onnxruntime's batched
    score update widens one score column (LinearClassifier, SVMClassifier)."""
    p = torch.sigmoid(score) if transform == _LOGISTIC else score
    return torch.stack([1 - p, p], -1)


def linear_classifier(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, labels: Any,
                      transform: int) -> tuple[Any, torch.Tensor]:
    """ai.onnx.ml LinearClassifier on float32 rows [N, F]: (labels [N], scores).

    Several classes: the label of the first largest score, scores post-transformed. One score
    column (two labels): the second label where the score is positive, and the scores
    ``[1 - p, p]`` with p the score, or its logistic under LOGISTIC (other transforms do not
    apply), as onnxruntime writes them.
    """
    scores = torch.nn.functional.linear(x, weight, bias)
    if scores.shape[1] > 1:
        return class_labels(scores.argmax(1), labels), post_transform(scores, transform)
    score = scores[:, 0]
    return class_labels((score > 0).to(torch.int64), labels), _complement_columns(score, transform)


def tree_classifier(x: torch.Tensor, feature: torch.Tensor, split: torch.Tensor, mode: torch.Tensor,
                    missing_true: torch.Tensor, next_true: torch.Tensor, next_false: torch.Tensor,
                    roots: torch.Tensor, depth: int, leaf_values: torch.Tensor, leaf_mask: torch.Tensor,
                    base_values: Optional[torch.Tensor], labels: Any, binary_labels: Any, one_class_voted: bool,
                    votes_all_positive: bool, transform: int) -> tuple[Any, torch.Tensor]:
    """ai.onnx.ml TreeEnsembleClassifier (votes summed over the trees): (labels [N], float32
    scores [N, classes]), following onnxruntime's rules where the spec is silent.

    More than two classes: base values are added (and count as votes), the label is that of the
    first highest voted class, and unvoted classes score 0 before the transform. Two classes:
    see :func:`_two_class_decision`.
    """
    leaves = tree_leaves(x, feature, split, mode, missing_true, next_true, next_false, None, roots, depth)
    scores, voted = tree_aggregate(leaves, leaf_values, leaf_mask, _SUM, int(roots.shape[0]))
    classes = scores.shape[1]
    n_base = 0 if base_values is None else int(base_values.shape[0])
    if classes > 2:
        if n_base:
            scores = torch.cat([scores[:, :n_base] + base_values, scores[:, n_base:]], 1)
            voted = torch.cat([torch.ones_like(voted[:, :n_base]), voted[:, n_base:]], 1)
        best = torch.where(voted, scores, torch.full_like(scores, -math.inf)).argmax(1)
        return (class_labels(best, labels),
                post_transform(torch.where(voted, scores, torch.zeros_like(scores)), transform).to(torch.float32))
    label, z = _two_class_decision(scores, voted, base_values, labels, binary_labels, one_class_voted,
                                   votes_all_positive, transform)
    return label, z.to(torch.float32)


def _two_class_decision(scores: torch.Tensor, voted: torch.Tensor, base_values: Optional[torch.Tensor],
                        labels: Any, binary_labels: Any, one_class_voted: bool, votes_all_positive: bool,
                        transform: int) -> tuple[Any, torch.Tensor]:
    """onnxruntime's two-class rules, row by row.

    Base values: two entries shift a voted second class to ``base[1] + score0`` (the first then
    being its negation), else each class by its own; one entry shifts the first class. A row whose
    second class got no vote keeps one score column (unless two base values were given). The
    positive score is the second class's when it got a vote, else the first's. When only one class is ever
    voted for, votes all >= 0 decide at 0.5 and give ``[1 - s, s]``, mixed votes decide at 0 and give
    ``[-s, s]`` (``[logistic(-s), logistic(s)]`` under LOGISTIC); otherwise the decision is at 0
    and labels are 0/1 (``binary_labels``). Rows that keep both columns are post-transformed.
    """
    s0, s1 = scores[:, 0], scores[:, 1]
    v0, v1 = voted[:, 0], voted[:, 1]
    n_base = 0 if base_values is None else int(base_values.shape[0])
    two_columns = v1
    if n_base == 2:
        shifted = base_values[1] + s0
        s1 = torch.where(v1, shifted, s1 + base_values[1])
        s0 = torch.where(v1, -shifted, s0 + base_values[0])
        two_columns = torch.ones_like(v1)
    elif n_base == 1:
        s0 = s0 + base_values[0]
    elif n_base > 2:
        two_columns = torch.ones_like(v1)
    zero = torch.zeros_like(s0)
    s0, s1 = torch.where(v0, s0, zero), torch.where(v1, s1, zero)  # an unvoted class reads as 0
    positive = torch.where(v1, s1, s0)
    if one_class_voted:
        above = positive > (0.5 if votes_all_positive else 0.0)
        label = class_labels(above.to(torch.int64), labels)
        single = _binary_scores(s0, transform, margin=not votes_all_positive)
    else:
        label = class_labels((positive > 0).to(torch.int64), binary_labels)
        single = (_binary_scores(s0, transform, margin=True) if n_base == 0
                  else torch.stack([s0, zero], -1))  # onnxruntime writes only the first column here
    if transform == _PROBIT:
        single = torch.stack([post_transform(s0, _PROBIT), zero], -1)
    both = post_transform(torch.stack([s0, s1], -1), transform)
    return label, torch.where(two_columns.unsqueeze(-1), both, single)


def one_hot_categories(x: Any, categories: Any, zeros: bool) -> torch.Tensor:
    """ai.onnx.ml OneHotEncoder: ``x`` [...] -> float32 [..., len(categories)], 1 where the value is
    that category. Integer categories (an int64 tensor) match numbers truncated to integers;
    string categories (a tuple) match a numpy array of str. ``zeros`` False: a value matching no
    category is an error, as in onnxruntime."""
    if isinstance(categories, torch.Tensor):
        hits = x.to(torch.int64).unsqueeze(-1) == categories
    else:
        column = {c: i for i, c in enumerate(categories)}
        arr = np.asarray(x, dtype=object)
        index = torch.tensor([column.get(v.decode("utf-8") if isinstance(v, bytes) else str(v), -1)
                              for v in arr.reshape(-1)], dtype=torch.int64).reshape(arr.shape)
        hits = index.unsqueeze(-1) == torch.arange(len(categories))
    if not zeros and not bool(hits.any(-1).all()):
        raise ValueError("OneHotEncoder: a value is none of the categories and zeros = 0")
    return hits.to(torch.float32)


# --- support vector machines (libsvm / liblinear through skl2onnx) ---------------------------------
_ROWS_PER_CHUNK_ELEMENTS = 1 << 24  # RBF differences computed at most this many elements at a time


def svm_kernel(x: torch.Tensor, vectors: torch.Tensor, kernel: str, gamma: float, coef0: float,
               degree: float) -> torch.Tensor:
    """The kernel between rows ``x`` [N, F] and ``vectors`` [V, F]: [N, V] (float32, as onnxruntime)."""
    if kernel == "RBF":  # from the differences themselves, in row chunks that bound the memory
        step = max(1, _ROWS_PER_CHUNK_ELEMENTS // max(1, vectors.numel()))
        return torch.cat([torch.exp(-gamma * (rows.unsqueeze(1) - vectors).square().sum(-1))
                          for rows in x.split(step)]) if x.shape[0] else x.new_zeros(0, vectors.shape[0])
    dot = x @ vectors.T
    if kernel == "LINEAR":
        return dot
    dot = gamma * dot + coef0
    return torch.tanh(dot) if kernel == "SIGMOID" else dot.pow(degree)


def svm_regressor(x: torch.Tensor, vectors: Optional[torch.Tensor], coefficients: torch.Tensor, rho: float,
                  kernel: str, gamma: float, coef0: float, degree: float, one_class: bool) -> torch.Tensor:
    """ai.onnx.ml SVMRegressor: ``kernel(x, vectors) @ coefficients + rho`` (without support vectors,
    ``x @ coefficients + rho``) as [N, 1]; one-class models give the sign as 1 / -1."""
    features = x if vectors is None else svm_kernel(x, vectors, kernel, gamma, coef0, degree)
    y = (features.to(torch.float64) @ coefficients.to(torch.float64) + rho).to(torch.float32).unsqueeze(1)
    return torch.where(y > 0, 1.0, -1.0) if one_class else y


def _pairwise_coupling(r: torch.Tensor, classes: int) -> torch.Tensor:
    """libsvm's multi-class probabilities from pairwise ones ``r`` [N, K, K] (Wu, Lin and Weng,
    method 2), iterated like onnxruntime: each row stops once its error is below 0.005 / K."""
    n = r.shape[0]
    q = torch.zeros(n, classes, classes, dtype=r.dtype)
    for i in range(classes):
        for j in range(classes):
            if j != i:
                q[:, i, i] += r[:, j, i] * r[:, j, i]
                q[:, i, j] = -r[:, j, i] * r[:, i, j]
    p = torch.full((n, classes), 1.0 / classes, dtype=r.dtype)
    eps = 0.005 / classes
    active = torch.ones(n, dtype=torch.bool)
    for _ in range(100):
        qp = (q @ p.unsqueeze(-1)).squeeze(-1)
        pqp = (p * qp).sum(-1)
        active = active & ((qp - pqp.unsqueeze(-1)).abs().amax(-1) >= eps)
        if not bool(active.any()):
            break
        new_p, new_qp, new_pqp = p.clone(), qp, pqp
        for i in range(classes):
            qii = q[:, i, i]
            diff = (-new_qp[:, i] + new_pqp) / qii
            new_p[:, i] = new_p[:, i] + diff
            new_pqp = (new_pqp + diff * (diff * qii + 2 * new_qp[:, i])) / (1 + diff) / (1 + diff)
            new_qp = (new_qp + diff.unsqueeze(-1) * q[:, i, :]) / (1 + diff).unsqueeze(-1)
            new_p = new_p / (1 + diff).unsqueeze(-1)
        p = torch.where(active.unsqueeze(-1), new_p, p)
    return p


def svm_classifier(x: torch.Tensor, vectors: Optional[torch.Tensor], weights: torch.Tensor, rho: torch.Tensor,
                   pairs: torch.Tensor, prob_a: Optional[torch.Tensor], prob_b: Optional[torch.Tensor],
                   labels: Any, kernel: str, gamma: float, coef0: float, degree: float,
                   weights_all_positive: bool, transform: int) -> tuple[Any, torch.Tensor]:
    """ai.onnx.ml SVMClassifier, with onnxruntime's labels and scores.

    Without support vectors (liblinear): scores ``x @ weights.T + rho[0]`` per class, the label
    of the first best (two classes: the second label when the best score passes 0.5 with
    non-negative weights, or 0 otherwise). With support vectors (libsvm, one-vs-one): a score per
    class pair (``pairs`` [P, 2]; ``weights`` [P, V] combine the kernel values) votes for its
    first class when positive, the label is the most voted class; the scores are the pair scores
    (two classes: ``[-s, s]``, or ``_complement_columns`` under a transform), or with ``prob_a``/``prob_b``
    the coupled class probabilities.
    """
    classes = len(labels)
    if vectors is None:
        scores = x @ weights.T + rho[0]
        best, top = scores.argmax(1), scores.amax(1)
        if classes == 2 and prob_a is None:
            above = top >= 0.5 if weights_all_positive else top > 0
            best = torch.where(above, 1, best)
        return class_labels(best, labels), (post_transform(scores, transform) if scores.shape[1] > 1 else
                                            (post_transform(scores, _PROBIT) if transform == _PROBIT else scores))
    kernels = svm_kernel(x, vectors, kernel, gamma, coef0, degree)
    pair_scores = (kernels.to(torch.float64) @ weights.T + rho).to(torch.float32)  # [N, P]
    winners = torch.where(pair_scores > 0, pairs[:, 0], pairs[:, 1])
    votes = torch.nn.functional.one_hot(winners, classes).sum(1)
    label = class_labels(votes.argmax(1), labels)
    if prob_a is not None and prob_b is not None:
        pairwise = (1 - torch.sigmoid(pair_scores * prob_a + prob_b)).clamp(1e-7, 1 - 1e-7)
        r = torch.zeros(x.shape[0], classes, classes, dtype=torch.float32)
        r[:, pairs[:, 0], pairs[:, 1]] = pairwise
        r[:, pairs[:, 1], pairs[:, 0]] = 1 - pairwise
        return label, post_transform(_pairwise_coupling(r, classes), transform)
    if classes > 2:
        return label, post_transform(pair_scores, transform)
    s = pair_scores[:, 0]
    if transform == _PROBIT:
        return label, torch.stack([post_transform(s, _PROBIT), torch.zeros_like(s)], -1)
    return label, _binary_scores(s, _NONE, margin=True) if transform == _NONE else _complement_columns(s, transform)


def impute(x: torch.Tensor, replaced: float, values: torch.Tensor) -> torch.Tensor:
    """ai.onnx.ml Imputer: entries equal to ``replaced`` (NaN entries when it is NaN) take
    ``values`` (one, or one per column of the last axis), in ``x``'s type."""
    missing = torch.isnan(x) if isinstance(replaced, float) and math.isnan(replaced) else x == replaced
    return torch.where(missing, values.to(x.dtype), x)


def zip_map(probabilities: torch.Tensor, labels: Sequence[Any]) -> list[dict[Any, float]]:
    """ai.onnx.ml ZipMap: one {label: probability} dict per row of [N, C] probabilities (a [C]
    input is one row), as onnxruntime returns seq(map(label, float))."""
    rows = probabilities.reshape(-1, probabilities.shape[-1]).tolist()
    return [dict(zip(labels, row)) for row in rows]


def feature_vectorize(inputs: Sequence[torch.Tensor], widths: Sequence[int]) -> torch.Tensor:
    """ai.onnx.ml FeatureVectorizer: each input as rows ([C] is one row), cut or zero-padded to its
    width, cast to float32, and concatenated along the columns."""
    parts = []
    for x, width in zip(inputs, widths):
        rows = x.reshape(1, -1) if x.dim() < 2 else x.reshape(x.shape[0], -1)
        rows = rows[:, :width].to(torch.float32)
        if rows.shape[1] < width:
            rows = torch.nn.functional.pad(rows, (0, width - rows.shape[1]))
        parts.append(rows)
    return torch.cat(parts, 1)


def normalize_rows(x: torch.Tensor, norm: str) -> torch.Tensor:
    """ai.onnx.ml Normalizer over the last axis of a [C] or [N, C] input, in float32: divide by
    the row's maximum (MAX), sum of magnitudes (L1) or Euclidean norm (L2); a row whose divisor is
    0 is copied unchanged."""
    x = x.to(torch.float32)
    if norm == "MAX":
        divisor = x.amax(-1, keepdim=True)
    elif norm == "L1":
        divisor = x.abs().sum(-1, keepdim=True)
    else:
        divisor = (x * x).sum(-1, keepdim=True)
    zero = divisor == 0
    safe = torch.where(zero, torch.ones_like(divisor), divisor)
    out = torch.sign(x) * torch.sqrt(x * x / safe) if norm == "L2" else x / safe
    return torch.where(zero, x, out)


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
