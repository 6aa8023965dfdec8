"""Classic ML ops: ai.onnx.ml Binarizer, Scaler, LinearRegressor and TreeEnsemble, and ai.onnx
TfIdfVectorizer.

The converters do the bookkeeping once, at conversion time (tree tables, n-gram pools as sorted
keys); ``runtime/ml.py`` runs them as vectorized tensor code.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import ml as rt

_INT64_MAX = (1 << 63) - 1


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


@converter("Binarizer", since=1, domain="ai.onnx.ml")
def binarizer(ctx: NodeContext) -> Handle:
    """1 where x > threshold, else 0, in x's dtype (NaN gives 0)."""
    dtype = ctx.dtype(0)
    if dtype is None:
        raise ctx.fail("Binarizer needs the input's element type")
    above = ctx.call(torch.gt, ctx.input(0), float(ctx.attr("threshold", 0.0)))
    return ctx.method("to", above, dtype)


# --- scaling and linear regression (scikit-learn's StandardScaler, LinearRegression, Ridge ...) ----
def _float_rows(ctx: NodeContext, rank_one_as_row: bool = False) -> Handle:
    """Input 0 as float32, the element type these ops compute and return whatever they read."""
    x = ctx.input(0)
    if ctx.dtype(0) != torch.float32:
        x = ctx.method("to", x, torch.float32)
    if rank_one_as_row and ctx.rank(0) == 1:  # one sample
        x = ctx.method("reshape", x, 1, -1)
    return x


def _float32s(ctx: NodeContext, name: str, default: list[float]) -> np.ndarray:
    """A float list attribute as float32 (``default`` when absent or empty)."""
    value = _floats(ctx, name)
    return (value if value is not None and value.size else np.asarray(default)).astype(np.float32)


@converter("Scaler", since=1, domain="ai.onnx.ml")
def scaler(ctx: NodeContext) -> Handle:
    """``(x - offset) * scale`` per feature (the last axis; one value applies to all), in float32."""
    offset, scale = _float32s(ctx, "offset", [0.0]), _float32s(ctx, "scale", [1.0])
    x = _float_rows(ctx)
    if np.any(offset):
        x = ctx.call(torch.sub, x, torch.from_numpy(offset) if offset.size > 1 else float(offset[0]))
    if np.any(scale != 1):
        x = ctx.call(torch.mul, x, torch.from_numpy(scale) if scale.size > 1 else float(scale[0]))
    return x


@converter("LinearRegressor", since=1, domain="ai.onnx.ml")
def linear_regressor(ctx: NodeContext) -> Handle:
    """``x @ coefficients.T + intercepts`` as float32 [N, targets] (one sample may come as [C])."""
    if _text(ctx.attr("post_transform", "NONE")) != "NONE":
        raise ctx.unsupported(f"post_transform {_text(ctx.attr('post_transform'))!r}")
    targets = int(ctx.attr("targets", 1))
    coefficients = _float32s(ctx, "coefficients", [])
    if targets < 1 or coefficients.size == 0 or coefficients.size % targets:
        raise ctx.fail(f"{coefficients.size} coefficients do not make {targets} rows")
    intercepts = _float32s(ctx, "intercepts", [])
    if intercepts.size not in (0, targets):
        raise ctx.fail(f"{intercepts.size} intercepts for {targets} targets")
    weight = torch.from_numpy(coefficients.reshape(targets, -1))
    bias = torch.from_numpy(intercepts) if intercepts.size else None
    return ctx.call(torch.nn.functional.linear, _float_rows(ctx, rank_one_as_row=True), weight, bias)


# --- trees -------------------------------------------------------------------------------------
class _Trees:
    """Node/leaf tables in one index space: nodes [0, n_nodes), leaves [n_nodes, n_nodes + n_leaves)."""

    def __init__(self, n_nodes: int, n_leaves: int) -> None:
        self.n_nodes = n_nodes
        size = n_nodes + n_leaves
        self.feature = np.zeros(size, np.int64)
        self.split = np.full(size, np.nan, np.float64)
        self.mode = np.zeros(size, np.int64)
        self.missing_true = np.zeros(size, bool)
        self.next_true = np.arange(size, dtype=np.int64)  # leaves point to themselves
        self.next_false = np.arange(size, dtype=np.int64)
        self.member_sets: dict[int, list[float]] = {}

    def depth(self, ctx: NodeContext, roots: list[int]) -> int:
        """Longest root-to-leaf path counted in decisions; fails on a cycle or a bad index."""
        size = len(self.feature)
        memo: dict[int, int] = {}
        for root in roots:
            stack = [(root, False)]
            on_path: set[int] = set()
            while stack:
                i, expanded = stack.pop()
                if not 0 <= i < size:
                    raise ctx.fail(f"tree index {i} is out of range")
                if i >= self.n_nodes:
                    memo[i] = 0
                    continue
                if expanded:
                    on_path.discard(i)
                    memo[i] = 1 + max(memo[int(self.next_true[i])], memo[int(self.next_false[i])])
                    continue
                if i in memo:
                    continue
                if i in on_path:
                    raise ctx.fail("tree nodes form a cycle")
                on_path.add(i)
                stack.append((i, True))
                stack.extend((int(c), False) for c in (self.next_true[i], self.next_false[i]) if int(c) not in memo)
        return max((memo[r] for r in roots), default=0)

    def members_table(self) -> Optional[torch.Tensor]:
        if not self.member_sets:
            return None
        width = max(len(s) for s in self.member_sets.values()) or 1
        table = np.full((len(self.feature), width), np.nan, np.float64)
        for i, values in self.member_sets.items():
            table[i, :len(values)] = values
        return torch.from_numpy(table)

    def emit(self, ctx: NodeContext, roots: list[int], leaf_values: np.ndarray, leaf_mask: np.ndarray,
             aggregate: int, base_values: Optional[np.ndarray], transform: int,
             out_dtype: torch.dtype) -> Handle:
        depth = self.depth(ctx, roots)
        pad = np.zeros((self.n_nodes,) + leaf_values.shape[1:], leaf_values.dtype)
        values = torch.from_numpy(np.concatenate([pad, leaf_values]).astype(np.float64))
        mask = torch.from_numpy(np.concatenate([pad.astype(bool), leaf_mask]))
        base = None if base_values is None else torch.from_numpy(np.asarray(base_values, np.float64))
        return ctx.call(rt.tree_ensemble, ctx.input(0), torch.from_numpy(self.feature),
                        torch.from_numpy(self.split), torch.from_numpy(self.mode),
                        torch.from_numpy(self.missing_true), torch.from_numpy(self.next_true),
                        torch.from_numpy(self.next_false), self.members_table(),
                        torch.tensor(roots, dtype=torch.int64), depth, values, mask, aggregate,
                        base, transform, out_dtype)


def _ints(ctx: NodeContext, name: str, default: Any = None) -> list[int]:
    value = ctx.attr(name, default)
    return [] if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _floats(ctx: NodeContext, name: str) -> Optional[np.ndarray]:
    value = ctx.attr(name, None)
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1)


@converter("TreeEnsemble", since=5, domain="ai.onnx.ml")
def tree_ensemble(ctx: NodeContext) -> Handle:
    """ai.onnx.ml TreeEnsemble: each leaf adds one weight to one target; output in X's dtype."""
    splits = _floats(ctx, "nodes_splits")
    features = _ints(ctx, "nodes_featureids")
    modes = _ints(ctx, "nodes_modes")
    true_ids, false_ids = _ints(ctx, "nodes_truenodeids"), _ints(ctx, "nodes_falsenodeids")
    true_leaf, false_leaf = _ints(ctx, "nodes_trueleafs"), _ints(ctx, "nodes_falseleafs")
    targets, weights = _ints(ctx, "leaf_targetids"), _floats(ctx, "leaf_weights")
    roots = _ints(ctx, "tree_roots")
    n_targets = int(ctx.attr("n_targets", 0)) or (max(targets) + 1 if targets else 1)
    n = len(modes)
    if splits is None or weights is None or any(len(a) != n for a in (splits, features, true_ids, false_ids,
                                                                       true_leaf, false_leaf)):
        raise ctx.fail("TreeEnsemble node attributes differ in length")
    if len(targets) != len(weights) or any(not 0 <= t < n_targets for t in targets):
        raise ctx.fail("TreeEnsemble leaf_targetids / leaf_weights are inconsistent with n_targets")
    missing = _ints(ctx, "nodes_missing_value_tracks_true") or [0] * n
    trees = _Trees(n, len(weights))
    trees.feature[:n] = features
    trees.split[:n] = splits
    trees.mode[:n] = modes
    trees.missing_true[:n] = np.asarray(missing[:n], bool)
    trees.next_true[:n] = [t + n if leaf else t for t, leaf in zip(true_ids, true_leaf)]
    trees.next_false[:n] = [f + n if leaf else f for f, leaf in zip(false_ids, false_leaf)]
    member_values = _floats(ctx, "membership_values")
    member_nodes = [i for i, m in enumerate(modes) if m == 6]
    if member_nodes:
        if member_values is None:
            raise ctx.fail("set-membership nodes need membership_values")
        groups, current = [], []
        for v in member_values:  # one NaN-terminated group per membership node, in node order
            if np.isnan(v):
                groups.append(current)
                current = []
            else:
                current.append(float(v))
        if len(groups) != len(member_nodes):
            raise ctx.fail("membership_values does not hold one group per set-membership node")
        trees.member_sets = dict(zip(member_nodes, groups))
    starts = []
    for r in roots:  # a tree that is only a leaf: both branches name the same leaf
        if not 0 <= r < n:
            raise ctx.fail(f"tree root {r} is out of range")
        is_leaf = true_leaf[r] and false_leaf[r] and true_ids[r] == false_ids[r]
        starts.append(true_ids[r] + n if is_leaf else r)
    leaf_values = np.zeros((len(weights), n_targets))
    leaf_mask = np.zeros((len(weights), n_targets), bool)
    leaf_values[np.arange(len(weights)), targets] = weights
    leaf_mask[np.arange(len(weights)), targets] = True
    dtype = ctx.dtype(0) or torch.float32
    # Under MIN/MAX a target that no tree reaches is 0, as onnxruntime computes it (onnx's Python
    # reference leaves the dtype's extreme there, an artifact of its initialisation).
    return trees.emit(ctx, starts, leaf_values, leaf_mask, int(ctx.attr("aggregate_function", 1)), None,
                      int(ctx.attr("post_transform", 0)), dtype)


_MODE_NAMES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
               "BRANCH_MEMBER": 6}
_AGGREGATES = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}
_TRANSFORMS = {"NONE": 0, "SOFTMAX": 1, "LOGISTIC": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}


def _tensor_or_list(ctx: NodeContext, name: str) -> Optional[np.ndarray]:
    """``<name>_as_tensor`` (double precision) when present, else ``<name>``."""
    value = _floats(ctx, name + "_as_tensor")
    return value if value is not None else _floats(ctx, name)


@converter("TreeEnsembleRegressor", since=1, domain="ai.onnx.ml")
def tree_ensemble_regressor(ctx: NodeContext) -> Handle:
    """The older regressor encoding: nodes named by (tree id, node id), LEAF rows, and per-leaf
    lists of (target, weight); output float32 [N, n_targets] plus base values."""
    tree_ids, node_ids = _ints(ctx, "nodes_treeids"), _ints(ctx, "nodes_nodeids")
    modes = [_text(m) for m in ctx.attr("nodes_modes", [])]
    features = _ints(ctx, "nodes_featureids")
    splits = _tensor_or_list(ctx, "nodes_values")
    true_ids, false_ids = _ints(ctx, "nodes_truenodeids"), _ints(ctx, "nodes_falsenodeids")
    missing = _ints(ctx, "nodes_missing_value_tracks_true") or [0] * len(modes)
    rows = len(modes)
    if splits is None:
        splits = np.zeros(rows)
    if any(len(a) != rows for a in (tree_ids, node_ids, features, splits, true_ids, false_ids)):
        raise ctx.fail("TreeEnsembleRegressor node attributes differ in length")
    unknown = sorted({m for m in modes if m != "LEAF" and m not in _MODE_NAMES})
    if unknown or "BRANCH_MEMBER" in modes:
        raise ctx.unsupported(f"node modes {unknown or ['BRANCH_MEMBER']}")
    position = {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids))}
    branches = [i for i, m in enumerate(modes) if m != "LEAF"]
    leaves = [i for i, m in enumerate(modes) if m == "LEAF"]
    slot = {row: k for k, row in enumerate(branches)}
    slot.update({row: len(branches) + k for k, row in enumerate(leaves)})
    trees = _Trees(len(branches), len(leaves))
    for k, i in enumerate(branches):
        trees.feature[k] = features[i]
        trees.split[k] = splits[i]
        trees.mode[k] = _MODE_NAMES[modes[i]]
        trees.missing_true[k] = bool(missing[i])
        for child, table in ((true_ids[i], trees.next_true), (false_ids[i], trees.next_false)):
            if (tree_ids[i], child) not in position:
                raise ctx.fail(f"tree {tree_ids[i]} node {node_ids[i]} points to missing node {child}")
            table[k] = slot[position[(tree_ids[i], child)]]
    n_targets = int(ctx.attr("n_targets", 1))
    leaf_values = np.zeros((len(leaves), n_targets))
    leaf_mask = np.zeros((len(leaves), n_targets), bool)
    weights = _tensor_or_list(ctx, "target_weights")
    for t, n, target, w in zip(_ints(ctx, "target_treeids"), _ints(ctx, "target_nodeids"), _ints(ctx, "target_ids"),
                               [] if weights is None else weights):
        row = position.get((t, n))
        if row is None or modes[row] != "LEAF" or not 0 <= target < n_targets:
            raise ctx.fail(f"target entry (tree {t}, node {n}, target {target}) names no leaf / target")
        leaf_values[slot[row] - len(branches), target] += w
        leaf_mask[slot[row] - len(branches), target] = True
    children = {(tree_ids[i], c) for i in branches for c in (true_ids[i], false_ids[i])}
    roots: dict[int, int] = {}
    for i, (t, n) in enumerate(zip(tree_ids, node_ids)):  # the first node of a tree no other node points to
        if t not in roots and (t, n) not in children:
            roots[t] = slot[i]
    base = _tensor_or_list(ctx, "base_values")
    if base is not None and len(base) not in (0, n_targets):
        raise ctx.fail(f"base_values has {len(base)} entries for {n_targets} targets")
    aggregate = _AGGREGATES.get(_text(ctx.attr("aggregate_function", "SUM")))
    transform = _TRANSFORMS.get(_text(ctx.attr("post_transform", "NONE")))
    if aggregate is None or transform is None:
        raise ctx.fail("unknown aggregate_function or post_transform")
    return trees.emit(ctx, [roots[t] for t in sorted(roots)], leaf_values, leaf_mask, aggregate,
                      base if base is not None and len(base) else None, transform, torch.float32)


# --- TfIdfVectorizer ---------------------------------------------------------------------------
def _pool_ngrams(ctx: NodeContext, pool: list, min_n: int, max_n: int) -> dict[int, dict[tuple, int]]:
    """{n: {n-gram: its position among the pool n-grams}} for min_n <= n <= max_n.

    ``ngram_counts[i]`` is where the (i+1)-grams start in the pool; the position indexes
    ``ngram_indexes`` (output column) and ``weights``. A repeated n-gram keeps its last position.
    """
    starts = _ints(ctx, "ngram_counts", [])
    columns = _ints(ctx, "ngram_indexes", [])
    grams: dict[int, dict[tuple, int]] = {}
    gram_id = 0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(pool)
        n = i + 1
        count = max(end - start, 0) // n
        for j in range(count):
            if gram_id >= len(columns):
                raise ctx.fail("ngram_indexes has fewer entries than the pool has n-grams")
            if min_n <= n <= max_n:
                grams.setdefault(n, {})[tuple(pool[start + j * n:start + (j + 1) * n])] = gram_id
            gram_id += 1
    return grams


@converter("TfIdfVectorizer", since=9)
def tfidf_vectorizer(ctx: NodeContext) -> Handle:
    """Counts pool n-grams (with skips) in each row; weights belong to pool n-grams, as the spec
    and onnxruntime read them."""
    min_n, max_n = int(ctx.attr("min_gram_length")), int(ctx.attr("max_gram_length"))
    max_skip = int(ctx.attr("max_skip_count"))
    mode = _text(ctx.attr("mode"))
    if mode not in ("TF", "IDF", "TFIDF"):
        raise ctx.fail(f"unknown mode {mode!r}")
    columns = _ints(ctx, "ngram_indexes", [])
    if not columns or min(columns) < 0:
        raise ctx.fail("ngram_indexes must be non-empty and non-negative")
    output_size = max(columns) + 1
    strings = ctx.has_attr("pool_strings")
    pool = [_text(s) for s in ctx.attr("pool_strings")] if strings else _ints(ctx, "pool_int64s", [])
    weights = _floats(ctx, "weights")
    if weights is not None and len(weights) == 0:
        weights = None
    if weights is not None and len(weights) != len(columns):
        raise ctx.fail(f"weights has {len(weights)} entries for {len(columns)} pool n-grams")
    grams = _pool_ngrams(ctx, pool, min_n, max_n)
    vocab = sorted({t for by_n in grams.values() for gram in by_n for t in gram})
    index = {t: i for i, t in enumerate(vocab)}
    base = len(vocab) + 1  # id len(vocab) marks a token outside the pool
    tables = []
    for n in sorted(grams):
        items = sorted(([index[t] for t in gram], gid) for gram, gid in grams[n].items())
        skips = (1,) if n == 1 else tuple(range(1, max_skip + 2))  # unigrams are counted once
        cols = torch.tensor([columns[gid] for _, gid in items], dtype=torch.int64)
        step = [1.0] * len(items) if weights is None or mode != "TFIDF" else [float(weights[g]) for _, g in items]
        values = torch.tensor(step, dtype=torch.float32)
        if base ** n <= _INT64_MAX:
            keys = [sum(t * base ** k for k, t in enumerate(ids)) for ids, _ in items]
            order = torch.from_numpy(np.argsort(keys, kind="stable"))
            tables.append((n, skips, torch.tensor(keys, dtype=torch.int64)[order], cols[order], values[order]))
        else:
            matrix = torch.tensor([ids for ids, _ in items], dtype=torch.int64).reshape(-1, n)
            tables.append((n, skips, matrix, cols, values))
    idf_weights = None
    if mode == "IDF" and weights is not None:  # a column shows the weight of its (last) n-gram
        per_column = np.zeros(output_size, np.float32)
        for gid, col in enumerate(columns):
            per_column[col] = weights[gid]
        idf_weights = torch.from_numpy(per_column)
    tokens = tuple(vocab) if strings else torch.tensor(vocab, dtype=torch.int64)
    return ctx.call(rt.tfidf_vectorize, ctx.input(0), tokens, tuple(tables), base, output_size, idf_weights,
                    mode == "IDF")
