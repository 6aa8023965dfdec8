"""Classic ML ops (what skl2onnx and onnxmltools write): ai.onnx.ml Binarizer, Scaler, Imputer,
Normalizer, OneHotEncoder, FeatureVectorizer, LinearRegressor, LinearClassifier, the support vector
machines, the tree ensembles and ZipMap (see ``onnx2x/torch/zipmap.py``), and ai.onnx TfIdfVectorizer.

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


def _class_labels(ctx: NodeContext, attr: str) -> Any:
    """``<attr>_strings`` as a tuple of str, else ``<attr>_int64s``/``_ints`` as an int64 tensor."""
    if ctx.has_attr(f"{attr}_strings"):
        return tuple(_text(v) for v in ctx.attr(f"{attr}_strings"))
    for suffix in ("int64s", "ints"):
        if ctx.has_attr(f"{attr}_{suffix}"):
            return torch.tensor(_ints(ctx, f"{attr}_{suffix}"), dtype=torch.int64)
    raise ctx.fail(f"no {attr}_strings or integer {attr}")


def _named_labels(ctx: NodeContext, labels: Any) -> Any:
    return ctx.named(labels, "class_labels") if isinstance(labels, torch.Tensor) else labels


def _transform(ctx: NodeContext) -> int:
    name = _text(ctx.attr("post_transform", "NONE"))
    if name not in _TRANSFORMS:
        raise ctx.fail(f"unknown post_transform {name!r}")
    return _TRANSFORMS[name]


@converter("LinearClassifier", since=1, domain="ai.onnx.ml")
def linear_classifier(ctx: NodeContext) -> Handle:
    """Scores ``x @ coefficients.T + intercepts`` and the label of the best (scikit-learn's
    LogisticRegression, LinearSVC, SGDClassifier ... through skl2onnx); see
    ``runtime/ml.linear_classifier`` for the one-score-column case."""
    labels = _class_labels(ctx, "classlabels")
    coefficients = _float32s(ctx, "coefficients", [])
    intercepts = _float32s(ctx, "intercepts", [])
    classes = intercepts.size or len(labels)
    if classes < 1 or coefficients.size == 0 or coefficients.size % classes:
        raise ctx.fail(f"{coefficients.size} coefficients do not make {classes} rows")
    if classes > 1 and len(labels) != classes:
        raise ctx.fail(f"{classes} score columns for {len(labels)} class labels")
    transform = _transform(ctx)
    if classes == 1 and len(labels) != 2:
        raise ctx.fail(f"a single score column needs two class labels, not {len(labels)}")
    if classes == 1 and transform == _TRANSFORMS["PROBIT"]:
        raise ctx.unsupported("post_transform PROBIT on a single score column "
                              "(onnxruntime leaves the second score unwritten)")
    bias = intercepts if intercepts.size else np.zeros(classes, np.float32)
    result = ctx.call(rt.linear_classifier, _float_rows(ctx, rank_one_as_row=True),
                      ctx.named(torch.from_numpy(coefficients.reshape(classes, -1)), "coefficients"),
                      ctx.named(torch.from_numpy(bias), "intercepts"), _named_labels(ctx, labels), transform)
    return ctx.getitem(result, 0), ctx.getitem(result, 1)


@converter("OneHotEncoder", since=1, domain="ai.onnx.ml")
def one_hot_encoder(ctx: NodeContext) -> Handle:
    """One float32 indicator per category on a new last axis (scikit-learn's OneHotEncoder through
    skl2onnx); numbers are truncated to integers before the lookup, as onnxruntime does. A value
    outside the categories gives all zeros, or an error when ``zeros`` is 0."""
    if ctx.has_attr("cats_strings"):
        categories: Any = tuple(_text(v) for v in ctx.attr("cats_strings"))
    elif ctx.has_attr("cats_int64s"):
        categories = ctx.named(torch.tensor(_ints(ctx, "cats_int64s"), dtype=torch.int64), "categories")
    else:
        raise ctx.fail("OneHotEncoder has neither cats_int64s nor cats_strings")
    return ctx.call(rt.one_hot_categories, ctx.input(0), categories, bool(int(ctx.attr("zeros", 1))))


@converter("Imputer", since=1, domain="ai.onnx.ml")
def imputer(ctx: NodeContext) -> Handle:
    """Replace one value (NaN by scikit-learn's SimpleImputer) by one value for all columns or one
    per column (the last axis), in the input's type."""
    dtype = ctx.dtype(0)  # unknown (no shape inference past a custom op): the attributes tell
    if dtype.is_floating_point if dtype is not None else ctx.has_attr("imputed_value_floats"):
        values = _floats(ctx, "imputed_value_floats")
        replaced: float = float(ctx.attr("replaced_value_float", 0.0))
        kind = "float"
    else:
        values = np.asarray(_ints(ctx, "imputed_value_int64s"), np.int64)
        replaced = int(ctx.attr("replaced_value_int64", 0))
        kind = "integer"
    if values is None or values.size == 0:
        raise ctx.fail(f"Imputer has no imputed values for its {kind} input")
    width = (ctx.shape(0) or [None])[-1] if ctx.rank(0) else None
    if values.size > 1 and width is not None and width != values.size:
        raise ctx.fail(f"{values.size} imputed values for {width} columns")
    fill = ctx.named(torch.from_numpy(values.astype(np.float32 if kind == "float" else np.int64)), "imputed_values")
    return ctx.call(rt.impute, ctx.input(0), replaced, fill)


@converter("FeatureVectorizer", since=1, domain="ai.onnx.ml")
def feature_vectorizer(ctx: NodeContext) -> Handle:
    """Inputs' rows side by side as float32 [N, sum(inputdimensions)], each input cut or
    zero-padded to its declared width."""
    widths = _ints(ctx, "inputdimensions", [])
    if len(widths) != ctx.num_inputs or any(w < 0 for w in widths):
        raise ctx.fail(f"inputdimensions {widths} does not give a width to each of the {ctx.num_inputs} inputs")
    return ctx.call(rt.feature_vectorize, [ctx.input(i) for i in range(ctx.num_inputs)], widths)


@converter("ZipMap", since=1, domain="ai.onnx.ml")
def zip_map(ctx: NodeContext) -> Handle:
    """A ZipMap at a graph output never gets here: ``onnx2x/torch/zipmap.py`` turns it into an
    Identity before the build and its output back into dicts after. One whose maps feed other
    nodes has no tensor form."""
    raise ctx.unsupported("ZipMap whose output feeds other nodes (only a ZipMap at a graph output converts)")


@converter("Normalizer", since=1, domain="ai.onnx.ml")
def normalizer(ctx: NodeContext) -> Handle:
    """Each row divided by its MAX, L1 or L2 norm, in float32 (skl2onnx puts an L1 Normalizer
    after one-vs-rest LOGISTIC scores to make them probabilities)."""
    norm = _text(ctx.attr("norm", "MAX"))
    if norm not in ("MAX", "L1", "L2"):
        raise ctx.fail(f"unknown norm {norm!r} (MAX, L1 or L2)")
    if ctx.rank(0) is not None and ctx.rank(0) > 2:
        raise ctx.fail(f"the input has rank {ctx.rank(0)}; Normalizer takes [C] or [N, C]")
    return ctx.call(rt.normalize_rows, ctx.input(0), norm)


# --- support vector machines ------------------------------------------------------------------------
def _svm_kernel(ctx: NodeContext) -> tuple[str, float, float, float]:
    """(kernel type, gamma, coef0, degree) of an SVM node."""
    kernel = _text(ctx.attr("kernel_type", "LINEAR"))
    if kernel not in ("LINEAR", "POLY", "RBF", "SIGMOID"):
        raise ctx.fail(f"unknown kernel_type {kernel!r}")
    params = _floats(ctx, "kernel_params")
    gamma, coef0, degree = (float(v) for v in params[:3]) if params is not None and params.size >= 3 else (0.0, 0.0, 0.0)
    return kernel, gamma, coef0, degree


def _support_vectors(ctx: NodeContext, count: int) -> Optional[torch.Tensor]:
    vectors = _float32s(ctx, "support_vectors", [])
    if count == 0:
        return None
    if vectors.size == 0 or vectors.size % count:
        raise ctx.fail(f"{vectors.size} support_vectors values do not make {count} vectors")
    return ctx.named(torch.from_numpy(vectors.reshape(count, -1)), "support_vectors")


@converter("SVMRegressor", since=1, domain="ai.onnx.ml")
def svm_regressor(ctx: NodeContext) -> Handle:
    """scikit-learn's SVR, NuSVR, OneClassSVM and LinearSVR through skl2onnx: float32 [N, 1]."""
    kernel, gamma, coef0, degree = _svm_kernel(ctx)
    count = int(ctx.attr("n_supports", 0))
    coefficients = _float32s(ctx, "coefficients", [])
    rho = _float32s(ctx, "rho", [0.0])
    vectors = _support_vectors(ctx, count)
    if vectors is not None and coefficients.size != count:
        raise ctx.fail(f"{coefficients.size} coefficients for {count} support vectors")
    return ctx.call(rt.svm_regressor, _float_rows(ctx, rank_one_as_row=True), vectors,
                    ctx.named(torch.from_numpy(coefficients), "coefficients"), float(rho[0]),
                    "LINEAR" if vectors is None else kernel, gamma, coef0, degree, bool(int(ctx.attr("one_class", 0))))


@converter("SVMClassifier", since=1, domain="ai.onnx.ml")
def svm_classifier(ctx: NodeContext) -> Handle:
    """scikit-learn's SVC and NuSVC (one-vs-one libsvm, with or without probabilities) through
    skl2onnx; labels and scores as onnxruntime computes them (``runtime/ml.svm_classifier``)."""
    labels = _class_labels(ctx, "classlabels")
    classes = len(labels)
    kernel, gamma, coef0, degree = _svm_kernel(ctx)
    per_class = _ints(ctx, "vectors_per_class", [])
    coefficients = _float32s(ctx, "coefficients", [])
    rho = _float32s(ctx, "rho", [])
    prob_a, prob_b = _float32s(ctx, "prob_a", []), _float32s(ctx, "prob_b", [])
    if prob_a.size != prob_b.size:
        raise ctx.fail("prob_a and prob_b differ in length")
    count = sum(per_class)
    pairs = [(i, j) for i in range(classes - 1) for j in range(i + 1, classes)]
    if count and (len(per_class) != classes or coefficients.size < (classes - 1) * count or rho.size < len(pairs)
                  or (prob_a.size and prob_a.size < len(pairs))):
        raise ctx.fail(f"vectors_per_class, coefficients, rho or prob_a do not fit {classes} classes "
                       f"and {count} support vectors")
    if not count and (rho.size < 1 or coefficients.size % classes):
        raise ctx.fail(f"{coefficients.size} coefficients do not make {classes} rows, or rho is empty")
    vectors = _support_vectors(ctx, count)
    if vectors is None:
        weights, rho_used = coefficients.reshape(classes, -1), rho[:1]
    else:  # the weight of each support vector in each class pair's decision
        coef = coefficients[:(classes - 1) * count].reshape(classes - 1, count)
        starts = np.concatenate([[0], np.cumsum(per_class)])
        weights = np.zeros((len(pairs), count), np.float64)
        for k, (i, j) in enumerate(pairs):
            weights[k, starts[i]:starts[i + 1]] = coef[j - 1, starts[i]:starts[i + 1]]
            weights[k, starts[j]:starts[j + 1]] = coef[i, starts[j]:starts[j + 1]]
        rho_used = rho[:len(pairs)].astype(np.float64)
    has_proba = vectors is not None and prob_a.size > 0
    result = ctx.call(rt.svm_classifier, _float_rows(ctx, rank_one_as_row=True), vectors,
                      ctx.named(torch.from_numpy(weights), "coefficients"), ctx.named(torch.from_numpy(rho_used), "rho"),
                      ctx.named(torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2), "class_pairs"),
                      ctx.named(torch.from_numpy(prob_a[:len(pairs)]), "prob_a") if has_proba else None,
                      ctx.named(torch.from_numpy(prob_b[:len(pairs)]), "prob_b") if has_proba else None,
                      _named_labels(ctx, labels), "LINEAR" if vectors is None else kernel, gamma, coef0, degree,
                      bool(np.all(coefficients >= 0)), _transform(ctx))
    return ctx.getitem(result, 0), ctx.getitem(result, 1)


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

    def tables(self, ctx: NodeContext) -> tuple[torch.Tensor, ...]:
        """feature, split, mode, missing-tracks-true, true and false successor tables, as named tensors."""
        return tuple(ctx.named(torch.from_numpy(table), f"tree_{name}") for name, table in (
            ("feature", self.feature), ("split", self.split), ("mode", self.mode), ("missing_true", self.missing_true),
            ("next_true", self.next_true), ("next_false", self.next_false)))

    def leaf_tables(self, ctx: NodeContext, leaf_values: np.ndarray, leaf_mask: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Leaf values and masks padded to the shared node/leaf index space (float64 / bool)."""
        pad = np.zeros((self.n_nodes,) + leaf_values.shape[1:], leaf_values.dtype)
        return (ctx.named(torch.from_numpy(np.concatenate([pad, leaf_values]).astype(np.float64)), "leaf_values"),
                ctx.named(torch.from_numpy(np.concatenate([pad.astype(bool), leaf_mask])), "leaf_mask"))

    def emit(self, ctx: NodeContext, roots: list[int], leaf_values: np.ndarray, leaf_mask: np.ndarray,
             aggregate: int, base_values: Optional[np.ndarray], transform: int,
             out_dtype: torch.dtype) -> Handle:
        depth = self.depth(ctx, roots)
        members = self.members_table()
        base = None if base_values is None else torch.from_numpy(np.asarray(base_values, np.float64))
        return ctx.call(rt.tree_ensemble, ctx.input(0), *self.tables(ctx),
                        None if members is None else ctx.named(members, "tree_members"),
                        ctx.named(torch.tensor(roots, dtype=torch.int64), "tree_roots"), depth,
                        *self.leaf_tables(ctx, leaf_values, leaf_mask), aggregate,
                        None if base is None else ctx.named(base, "base_values"), transform, out_dtype)


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


class _LegacyTrees:
    """The node tables of TreeEnsembleRegressor/Classifier (ai.onnx.ml 1-3): nodes named by
    (tree id, node id) with LEAF rows, read into :class:`_Trees`; leaves get their values later."""

    def __init__(self, ctx: NodeContext, op: str) -> None:
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
            raise ctx.fail(f"{op} node attributes differ in length")
        unknown = sorted({m for m in modes if m != "LEAF" and m not in _MODE_NAMES})
        if unknown or "BRANCH_MEMBER" in modes:
            raise ctx.unsupported(f"node modes {unknown or ['BRANCH_MEMBER']}")
        self.position = {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids))}
        self.modes = modes
        branches = [i for i, m in enumerate(modes) if m != "LEAF"]
        leaves = [i for i, m in enumerate(modes) if m == "LEAF"]
        self.n_leaves = len(leaves)
        self.slot = {row: k for k, row in enumerate(branches)}
        self.slot.update({row: len(branches) + k for k, row in enumerate(leaves)})
        self.trees = _Trees(len(branches), len(leaves))
        for k, i in enumerate(branches):
            self.trees.feature[k] = features[i]
            self.trees.split[k] = splits[i]
            self.trees.mode[k] = _MODE_NAMES[modes[i]]
            self.trees.missing_true[k] = bool(missing[i])
            for child, table in ((true_ids[i], self.trees.next_true), (false_ids[i], self.trees.next_false)):
                if (tree_ids[i], child) not in self.position:
                    raise ctx.fail(f"tree {tree_ids[i]} node {node_ids[i]} points to missing node {child}")
                table[k] = self.slot[self.position[(tree_ids[i], child)]]
        children = {(tree_ids[i], c) for i in branches for c in (true_ids[i], false_ids[i])}
        roots: dict[int, int] = {}
        for i, (t, n) in enumerate(zip(tree_ids, node_ids)):  # the first node of a tree no other node points to
            if t not in roots and (t, n) not in children:
                roots[t] = self.slot[i]
        self.roots = [roots[t] for t in sorted(roots)]

    def leaf_table(self, ctx: NodeContext, prefix: str, width: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Per-leaf values and which of ``width`` columns each leaf feeds, from the
        ``<prefix>_treeids/_nodeids/_ids/_weights`` votes; also the column ids voted for."""
        values = np.zeros((self.n_leaves, width))
        mask = np.zeros((self.n_leaves, width), bool)
        ids = _ints(ctx, f"{prefix}_ids")
        weights = _tensor_or_list(ctx, f"{prefix}_weights")
        votes = (_ints(ctx, f"{prefix}_treeids"), _ints(ctx, f"{prefix}_nodeids"), ids, [] if weights is None else weights)
        if len({len(v) for v in votes}) != 1:
            raise ctx.fail(f"{prefix}_treeids/_nodeids/_ids/_weights differ in length")
        for t, n, column, w in zip(*votes):
            row = self.position.get((t, n))
            if row is None or self.modes[row] != "LEAF" or not 0 <= column < width:
                raise ctx.fail(f"{prefix} entry (tree {t}, node {n}, id {column}) names no leaf / column")
            values[self.slot[row] - self.trees.n_nodes, column] += w
            mask[self.slot[row] - self.trees.n_nodes, column] = True
        return values, mask, ids


@converter("TreeEnsembleRegressor", since=1, domain="ai.onnx.ml")
def tree_ensemble_regressor(ctx: NodeContext) -> Handle:
    """The older regressor encoding: nodes named by (tree id, node id), LEAF rows, and per-leaf
    lists of (target, weight); output float32 [N, n_targets] plus base values."""
    legacy = _LegacyTrees(ctx, "TreeEnsembleRegressor")
    n_targets = int(ctx.attr("n_targets", 1))
    leaf_values, leaf_mask, _ = legacy.leaf_table(ctx, "target", n_targets)
    base = _tensor_or_list(ctx, "base_values")
    if base is not None and len(base) not in (0, n_targets):
        raise ctx.fail(f"base_values has {len(base)} entries for {n_targets} targets")
    aggregate = _AGGREGATES.get(_text(ctx.attr("aggregate_function", "SUM")))
    transform = _TRANSFORMS.get(_text(ctx.attr("post_transform", "NONE")))
    if aggregate is None or transform is None:
        raise ctx.fail("unknown aggregate_function or post_transform")
    return legacy.trees.emit(ctx, legacy.roots, leaf_values, leaf_mask, aggregate,
                             base if base is not None and len(base) else None, transform, torch.float32)


@converter("TreeEnsembleClassifier", since=1, domain="ai.onnx.ml")
def tree_ensemble_classifier(ctx: NodeContext) -> Handle:
    """Votes per class summed over the trees, plus base values; labels and float32 scores as
    onnxruntime computes them (``runtime/ml.tree_classifier``)."""
    legacy = _LegacyTrees(ctx, "TreeEnsembleClassifier")
    labels = _class_labels(ctx, "classlabels")
    classes = len(labels)
    if classes < 2:
        raise ctx.unsupported(f"a classifier with {classes} class label(s)")
    leaf_values, leaf_mask, class_ids = legacy.leaf_table(ctx, "class", classes)
    base = _tensor_or_list(ctx, "base_values")
    if base is not None and len(base) not in (0, classes) and not (classes == 2 and len(base) == 1):
        raise ctx.fail(f"base_values has {len(base)} entries for {classes} classes")
    transform = _transform(ctx)
    one_class_voted = classes == 2 and len(set(class_ids)) == 1
    weights = _tensor_or_list(ctx, "class_weights")
    binary_labels = labels if isinstance(labels, tuple) or one_class_voted else torch.tensor([0, 1])
    t = legacy.trees
    base_values = None if base is None or not len(base) else ctx.named(torch.from_numpy(base), "base_values")
    result = ctx.call(rt.tree_classifier, ctx.input(0), *t.tables(ctx),
                      ctx.named(torch.tensor(legacy.roots, dtype=torch.int64), "tree_roots"), t.depth(ctx, legacy.roots),
                      *t.leaf_tables(ctx, leaf_values, leaf_mask), base_values, _named_labels(ctx, labels),
                      _named_labels(ctx, binary_labels), one_class_voted, weights is None or bool(np.all(weights >= 0)),
                      transform)
    return ctx.getitem(result, 0), ctx.getitem(result, 1)


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
