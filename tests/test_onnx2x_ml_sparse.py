"""Sparse tensors, string constants and classic-ML ops (TfIdfVectorizer, Binarizer, tree
ensembles) through onnx2x torch, checked against onnxruntime and the ONNX conformance cases."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from common.errors import ConversionError, ModelLoadError, SecurityError
from onnx2x.torch import convert
from onnx2x.torch import sparse as sparse_mod
from onnx2x.torch.artifact import save
from onnx2x.torch.ops import ml as ml_ops
from tests.support.conformance import node_cases, run_case
from tests.support.onnx_cases import reference_outputs

ML = "ai.onnx.ml"


def _model(nodes, inputs, outputs, initializers=(), opset=17, ml_opset=None, ir_version=9):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(ML, ml_opset)] if ml_opset else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=ir_version)


def _np(value):
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


# --- conformance cases -------------------------------------------------------------------------
_CASES = {c.name: c for c in node_cases()}
_NAMES = sorted(n for n in _CASES if n.startswith(("test_tfidfvectorizer", "test_ai_onnx_ml_binarizer",
                                                   "test_ai_onnx_ml_tree_ensemble", "test_equal_string")))


def test_conformance_cases_are_found() -> None:
    assert len(_NAMES) == 12


@pytest.mark.parametrize("name", _NAMES)
def test_conformance_case(name: str) -> None:
    result = run_case(_CASES[name])
    assert result.status == "pass", result.detail


# --- sparse tensors ----------------------------------------------------------------------------
def _sparse(values: np.ndarray, indices: np.ndarray, dims: list[int], name: str = "") -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(numpy_helper.from_array(values, name), numpy_helper.from_array(indices), dims)


def _sparse_model() -> onnx.ModelProto:
    linear = _sparse(np.array([1.5, -2.0, 3.0], np.float32), np.array([1, 5, 11], np.int64), [3, 4], "W")
    coords = _sparse(np.array([7, 9, -4], np.int64), np.array([[0, 1], [1, 2], [1, 0]], np.int64), [2, 3])
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], sparse_value=_sparse(np.array([2.5], np.float32),
                                                                      np.array([2], np.int64), [4])),
         helper.make_node("Add", ["c", "c"], ["b"])],  # onnxruntime cannot return a sparse Constant as is
        "then", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    other = helper.make_graph([helper.make_node("Constant", [], ["e"], value_floats=[0.0, 0.0, 0.0, 1.0])],
                              "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("Add", ["X", "W"], ["Y"]),
             helper.make_node("Constant", [], ["C"], sparse_value=coords),
             helper.make_node("Cast", ["C"], ["Z"], to=TensorProto.FLOAT),
             helper.make_node("If", ["flag"], ["B"], then_branch=branch, else_branch=other)]
    model = _model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 4]),
                           helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 4]),
                    helper.make_tensor_value_info("Z", TensorProto.FLOAT, [2, 3]),
                    helper.make_tensor_value_info("B", TensorProto.FLOAT, [4])])
    model.graph.sparse_initializer.append(linear)
    return model


@pytest.mark.parametrize("simplify", [False, True])
@pytest.mark.parametrize("flag", [True, False])
def test_sparse_initializer_and_constants_match_onnxruntime(simplify: bool, flag: bool) -> None:
    model = _sparse_model()
    before = model.SerializeToString()
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    expected = reference_outputs(model, {"X": x, "flag": np.array(flag)})
    got = _as_list(convert(model, simplify=simplify)(torch.from_numpy(x), torch.tensor(flag)))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(_np(g), e)
    assert model.SerializeToString() == before  # the caller's proto is not rewritten


def test_sparse_bad_indices_are_a_load_error() -> None:
    model = _model([helper.make_node("Identity", ["W"], ["Y"])], [],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 2])])
    model.graph.sparse_initializer.append(_sparse(np.array([1.0], np.float32), np.array([4], np.int64), [2, 2], "W"))
    with pytest.raises(ModelLoadError, match="out of range"):
        convert(model, simplify=False)


def test_sparse_huge_dense_shape_is_refused() -> None:
    sp = _sparse(np.array([1.0], np.float32), np.array([0], np.int64), [1 << 20, 1 << 20], "W")
    model = _model([helper.make_node("Identity", ["W"], ["Y"])], [],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model.graph.sparse_initializer.append(sp)
    assert sparse_mod.has_sparse(model)
    with pytest.raises(SecurityError):
        convert(model, simplify=False)


# --- string constants --------------------------------------------------------------------------
def _string_model() -> onnx.ModelProto:
    table = numpy_helper.from_array(np.array(["ab", "c", "d"], dtype=object), "S")
    nodes = [helper.make_node("Equal", ["X", "S"], ["E"]),
             helper.make_node("Constant", [], ["K"], value_strings=["p", "q", "r"]),
             helper.make_node("Where", ["E", "K", "X"], ["W"]),
             helper.make_node("Constant", [], ["K2"],
                              value=numpy_helper.from_array(np.array([["u", "v", "w"]], dtype=object))),
             helper.make_node("Identity", ["K2"], ["O"])]
    return _model(nodes, [helper.make_tensor_value_info("X", TensorProto.STRING, [2, 3])],
                  [helper.make_tensor_value_info("E", TensorProto.BOOL, [2, 3]),
                   helper.make_tensor_value_info("W", TensorProto.STRING, [2, 3]),
                   helper.make_tensor_value_info("O", TensorProto.STRING, [1, 3])], [table], opset=19)


def _assert_same(expected, got) -> None:
    for e, g in zip(expected, got):
        g = _np(g)
        assert g.shape == e.shape
        assert g.tolist() == e.tolist()


def test_string_constants_equal_and_where_match_onnxruntime(tmp_path) -> None:
    model = _string_model()
    x = np.array([["ab", "x", "d"], ["c", "c", "c"]], dtype=object)
    expected = reference_outputs(model, {"X": x})
    gm = convert(model, simplify=False)
    _assert_same(expected, gm(x))
    # The saved artifact rebuilds the string constants from source literals.
    save(gm, tmp_path / "m.pt")
    spec = importlib.util.spec_from_file_location("string_model", tmp_path / "m.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _assert_same(expected, mod.load()(x))


# --- Binarizer ---------------------------------------------------------------------------------
def test_binarizer_matches_onnxruntime() -> None:
    node = helper.make_node("Binarizer", ["X"], ["Y"], domain=ML, threshold=0.25)
    model = _model([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 5])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 5])], ml_opset=1)
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    x[0, 0] = 0.25  # a tie stays 0
    out = convert(model, simplify=False)(torch.from_numpy(x))
    expected = reference_outputs(model, {"X": x})[0]
    assert out.dtype == torch.from_numpy(expected).dtype
    np.testing.assert_array_equal(out.numpy(), expected)


# --- TfIdfVectorizer ---------------------------------------------------------------------------
def _tfidf_case(rng, strings: bool, min_n: int, max_n: int, skip: int, mode: str, weighted: bool, shape):
    vocab = [f"w{i}" for i in range(6)] if strings else list(range(2, 8))
    counts, pool, n_grams = [], [], 0
    for n in (1, 2, 3):
        counts.append(len(pool))
        seen = set()
        for _ in range(int(rng.integers(1, 5))):
            gram = tuple(vocab[i] for i in rng.integers(0, len(vocab), size=n))
            if gram not in seen:
                seen.add(gram)
                pool.extend(gram)
                n_grams += 1
    columns = [int(c) for c in rng.permutation(n_grams + 2)[:n_grams]]  # some columns stay unused
    attrs = dict(min_gram_length=min_n, max_gram_length=max_n, max_skip_count=skip, mode=mode,
                 ngram_counts=counts, ngram_indexes=columns)
    attrs["pool_strings" if strings else "pool_int64s"] = pool
    if weighted:
        attrs["weights"] = [float(w) for w in np.round(rng.random(n_grams) * 3, 2)]
    node = helper.make_node("TfIdfVectorizer", ["X"], ["Y"], **attrs)
    model = _model([node], [helper.make_tensor_value_info("X", TensorProto.STRING if strings else TensorProto.INT64,
                                                          list(shape))],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    picks = rng.integers(0, len(vocab) + 1, size=int(np.prod(shape)))  # len(vocab): a token outside the pool
    other = "zz" if strings else 99
    x = np.array([vocab[i] if i < len(vocab) else other for i in picks],
                 dtype=object if strings else np.int64).reshape(shape)
    return model, x


@pytest.mark.parametrize("brute", [False, True], ids=["keys", "id-matrix"])
@pytest.mark.parametrize("strings", [False, True], ids=["ints", "strings"])
@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
def test_tfidf_matches_onnxruntime(monkeypatch, brute: bool, strings: bool, mode: str) -> None:
    if brute:  # keys would "overflow": exercise the n-gram matrix comparison path
        monkeypatch.setattr(ml_ops, "_INT64_MAX", 10)
    rng = np.random.default_rng(7)
    for min_n, max_n in ((1, 1), (1, 2), (1, 3), (2, 3), (3, 3)):
        for skip in (0, 2):
            for weighted in (False, True):
                shape = (12,) if rng.random() < 0.5 else (3, 9)
                model, x = _tfidf_case(rng, strings, min_n, max_n, skip, mode, weighted, shape)
                expected = reference_outputs(model, {"X": x})[0]
                got = convert(model, simplify=False)(x if strings else torch.from_numpy(x))
                assert got.dtype == torch.float32 and tuple(got.shape) == expected.shape
                np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


# --- tree ensembles ----------------------------------------------------------------------------
def _random_tree_ensemble(rng, n_trees: int, n_features: int, n_targets: int, depth: int,
                          dtype=np.float64) -> dict:
    """TreeEnsemble (ai.onnx.ml 5) attributes; integer splits and members so ties and set
    membership are exercised (onnxruntime only implements integer membership values)."""
    a: dict[str, list] = {k: [] for k in ("modes", "features", "splits", "true", "false", "true_leaf", "false_leaf",
                                          "missing", "leaf_targets", "leaf_weights", "roots", "members")}

    def leaf() -> int:
        a["leaf_targets"].append(int(rng.integers(n_targets)))
        a["leaf_weights"].append(float(rng.normal()))
        return len(a["leaf_targets"]) - 1

    def node(d: int) -> int:
        i = len(a["modes"])
        mode = int(rng.integers(7))
        a["modes"].append(mode)
        a["features"].append(int(rng.integers(n_features)))
        a["splits"].append(float(rng.integers(-3, 4)) if mode != 6 else math.nan)
        a["missing"].append(int(rng.integers(2)))
        if mode == 6:
            a["members"].extend([float(v) for v in rng.integers(-3, 4, size=3)] + [math.nan])
        for key in ("true", "false", "true_leaf", "false_leaf"):
            a[key].append(0)
        for side in ("true", "false"):
            if d == 0 or rng.random() < 0.3:
                a[side][i], a[side + "_leaf"][i] = leaf(), 1
            else:
                a[side][i], a[side + "_leaf"][i] = node(d - 1), 0
        return i

    a["roots"] = [node(depth) for _ in range(n_trees)]
    attrs = dict(nodes_modes=numpy_helper.from_array(np.array(a["modes"], np.uint8)), nodes_featureids=a["features"],
                 nodes_splits=numpy_helper.from_array(np.array(a["splits"], dtype)),
                 nodes_truenodeids=a["true"], nodes_falsenodeids=a["false"], nodes_trueleafs=a["true_leaf"],
                 nodes_falseleafs=a["false_leaf"], nodes_missing_value_tracks_true=a["missing"],
                 leaf_targetids=a["leaf_targets"],
                 leaf_weights=numpy_helper.from_array(np.array(a["leaf_weights"], dtype)),
                 tree_roots=a["roots"], n_targets=n_targets)
    if a["members"]:
        attrs["membership_values"] = numpy_helper.from_array(np.array(a["members"], dtype))
    return attrs


def _tree_model(attrs: dict, aggregate: int, transform: int, onnx_type: int) -> onnx.ModelProto:
    node = helper.make_node("TreeEnsemble", ["X"], ["Y"], domain=ML, aggregate_function=aggregate,
                            post_transform=transform, **attrs)
    return _model([node], [helper.make_tensor_value_info("X", onnx_type, [None, 3])],
                  [helper.make_tensor_value_info("Y", onnx_type, [None, 3])], opset=21, ml_opset=5, ir_version=10)


def _features(rng, dtype) -> np.ndarray:
    x = rng.integers(-4, 5, size=(64, 3)).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3], ids=["AVERAGE", "SUM", "MIN", "MAX"])
@pytest.mark.parametrize("dtype,onnx_type", [(np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE)])
def test_tree_ensemble_matches_onnxruntime(aggregate: int, dtype, onnx_type: int) -> None:
    rng = np.random.default_rng(aggregate)
    for _ in range(3):
        attrs = _random_tree_ensemble(rng, n_trees=4, n_features=3, n_targets=3, depth=4, dtype=dtype)
        x = _features(rng, dtype)
        for transform in (0, 3):  # NONE, SOFTMAX_ZERO
            model = _tree_model(attrs, aggregate, transform, onnx_type)
            expected = reference_outputs(model, {"X": x})[0]
            got = convert(model, simplify=False)(torch.from_numpy(x))
            assert got.dtype == torch.from_numpy(expected).dtype
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tree_ensemble_softmax_and_logistic_follow_the_spec_numbering() -> None:
    """SOFTMAX is 1 and LOGISTIC 2 in the TreeEnsemble spec (onnxruntime 1.31 swaps them), so
    the expected values are onnxruntime's raw scores put through the named transform."""
    rng = np.random.default_rng(11)
    attrs = _random_tree_ensemble(rng, n_trees=5, n_features=3, n_targets=3, depth=4)
    x = _features(rng, np.float64)
    raw = torch.from_numpy(reference_outputs(_tree_model(attrs, 1, 0, TensorProto.DOUBLE), {"X": x})[0])
    for transform, fn in ((1, lambda s: torch.softmax(s, -1)), (2, torch.sigmoid),
                          (4, lambda s: math.sqrt(2) * torch.erfinv(2 * s - 1))):
        got = convert(_tree_model(attrs, 1, transform, TensorProto.DOUBLE), simplify=False)(torch.from_numpy(x))
        np.testing.assert_allclose(got.numpy(), fn(raw).numpy(), rtol=1e-7, atol=1e-9)


_MODE_NAMES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


def _random_regressor(rng, n_trees: int, n_features: int, n_targets: int, depth: int) -> dict:
    a: dict[str, list] = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
                                          "nodes_values", "nodes_truenodeids", "nodes_falsenodeids",
                                          "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids",
                                          "target_ids", "target_weights")}
    for tree in range(n_trees):
        next_id = [0]

        def node(d: int) -> int:
            nid, row = next_id[0], len(a["nodes_nodeids"])
            next_id[0] += 1
            a["nodes_treeids"].append(tree)
            a["nodes_nodeids"].append(nid)
            a["nodes_featureids"].append(int(rng.integers(n_features)))
            a["nodes_missing_value_tracks_true"].append(int(rng.integers(2)))
            a["nodes_values"].append(float(rng.integers(-3, 4)))
            a["nodes_truenodeids"].append(0)
            a["nodes_falsenodeids"].append(0)
            if d == 0 or rng.random() < 0.25:
                a["nodes_modes"].append("LEAF")
                for target in rng.choice(n_targets, size=int(rng.integers(1, n_targets + 1)), replace=False):
                    a["target_treeids"].append(tree)
                    a["target_nodeids"].append(nid)
                    a["target_ids"].append(int(target))
                    a["target_weights"].append(float(rng.normal()))
            else:
                a["nodes_modes"].append(_MODE_NAMES[int(rng.integers(6))])
                a["nodes_truenodeids"][row] = node(d - 1)
                a["nodes_falsenodeids"][row] = node(d - 1)
            return nid

        node(depth)
    return a


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE", "MIN", "MAX"])
def test_tree_ensemble_regressor_matches_onnxruntime(aggregate: str) -> None:
    rng = np.random.default_rng(len(aggregate))
    for transform in ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"):
        attrs = _random_regressor(rng, n_trees=5, n_features=3, n_targets=3, depth=4)
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain=ML, aggregate_function=aggregate,
                                post_transform=transform, n_targets=3, base_values=[0.1, -0.2, 0.3], **attrs)
        model = _model([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])], ml_opset=3)
        x = _features(rng, np.float32)
        expected = reference_outputs(model, {"X": x})[0]
        got = convert(model, simplify=False)(torch.from_numpy(x))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tree_ensemble_with_a_cycle_is_refused() -> None:
    attrs = dict(nodes_modes=numpy_helper.from_array(np.array([0, 0], np.uint8)), nodes_featureids=[0, 0],
                 nodes_splits=numpy_helper.from_array(np.array([0.0, 1.0])), nodes_truenodeids=[1, 0],
                 nodes_falsenodeids=[0, 0], nodes_trueleafs=[0, 0], nodes_falseleafs=[1, 1],
                 leaf_targetids=[0], leaf_weights=numpy_helper.from_array(np.array([1.0])), tree_roots=[0],
                 n_targets=1)
    node = helper.make_node("TreeEnsemble", ["X"], ["Y"], domain=ML, **attrs)
    model = _model([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])], opset=21, ml_opset=5,
                   ir_version=10)
    with pytest.raises(ConversionError, match="cycle"):
        convert(model, simplify=False)


def _zipmap_model(labels: str) -> onnx.ModelProto:
    """What skl2onnx writes for a classifier with its defaults: probabilities -> ZipMap."""
    key = TensorProto.STRING if labels == "strings" else TensorProto.INT64
    seq_of_maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(key, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    attrs = dict(classlabels_strings=["ant", "bee", "cow"]) if labels == "strings" else dict(classlabels_int64s=[3, 7, 9])
    nodes = [helper.make_node("Softmax", ["scores"], ["probabilities"]),
             helper.make_node("ZipMap", ["probabilities"], ["output_probability"], name="ZipMap", domain=ML, **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3]),
                               helper.make_value_info("output_probability", seq_of_maps)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    onnx.checker.check_model(model, full_check=True)  # a valid model
    return model


@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_zipmap_output_gives_one_dict_per_row_as_onnxruntime(tmp_path, labels: str) -> None:
    """scikit-learn classifiers converted by skl2onnx with its defaults end in ZipMap, whose
    seq(map(label, float)) output onnx-ir cannot represent: this was refused. Now the module
    returns onnxruntime's list of {label: probability} dicts, the CLI checks them against it, and
    the caller's proto is left as it was."""
    from onnx2x.cli import main
    from onnx2x.torch.artifact import load

    model = _zipmap_model(labels)
    before = model.SerializeToString()
    x = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    _, want = reference_outputs(model, {"scores": x}, "ort")
    probabilities, maps = convert(model)(torch.from_numpy(x))
    assert model.SerializeToString() == before
    assert isinstance(maps, list) and len(maps) == len(want)
    for got_row, want_row, p in zip(maps, want, probabilities.numpy()):
        assert list(got_row) == list(want_row)
        np.testing.assert_allclose(list(got_row.values()), list(want_row.values()), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(list(got_row.values()), p)
    path, out = tmp_path / "zipmap.onnx", tmp_path / "net.pt"
    onnx.save(model, str(path))
    assert main(["torch", str(path), "-o", str(out)]) == 0
    _, maps = load(str(out))(torch.from_numpy(x))
    assert [list(row) for row in maps] == [list(row) for row in want]


def test_info_summarizes_a_zipmap_model_and_calls_it_supported(tmp_path, capsys) -> None:
    """`onnx2x info` loaded the graph into onnx-ir, which has no map type: it refused the model
    that the conversion takes."""
    import json

    from onnx2x.cli import main

    path = tmp_path / "zipmap.onnx"
    onnx.save(_zipmap_model("ints"), str(path))
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["unsupported_ops"] == []
    assert [o["name"] for o in data["outputs"]] == ["probabilities", "output_probability"]
    assert "map-typed value output_probability: seq(map(int64,tensor(float)))" in data["notes"]


def test_map_typed_graph_input_is_refused_naming_the_value(tmp_path, capsys) -> None:
    """A map-typed graph input (what DictVectorizer reads) has no tensor form: refused, naming it."""
    from common.errors import UnsupportedOpError
    from onnx2x.cli import main

    node = helper.make_node("DictVectorizer", ["features"], ["vector"], domain=ML, string_vocabulary=["a", "b"])
    features = helper.make_value_info("features", helper.make_map_type_proto(
        TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    graph = helper.make_graph([node], "g", [features], [helper.make_tensor_value_info("vector", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    with pytest.raises(UnsupportedOpError, match=r"'features' is map\(string,tensor\(float\)\)"):
        convert(model)
    path = tmp_path / "dict.onnx"
    onnx.save(model, str(path))
    assert main(["torch", str(path), "-o", str(tmp_path / "net.pt")]) == 3
    assert "features" in capsys.readouterr().err
    assert not list(tmp_path.glob("net.*"))


_LINEAR_CASES = {
    "scaler-per-feature": (dict(op_type="Scaler", offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, 3.0]), ["n", 3], "float32"),
    "scaler-one-value": (dict(op_type="Scaler", offset=[0.5], scale=[2.0]), ["n", 3], "float32"),
    "scaler-int64": (dict(op_type="Scaler", offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, 3.0]), ["n", 3], "int64"),
    "regressor-two-targets": (dict(op_type="LinearRegressor", coefficients=[0.3, -1.2, 0.7, 2.0, 0.1, -0.4],
                                   intercepts=[0.3, -0.2], targets=2), ["n", 3], "float32"),
    "regressor-no-intercept": (dict(op_type="LinearRegressor", coefficients=[0.3, -1.2, 0.7]), ["n", 3], "float32"),
    "regressor-one-sample": (dict(op_type="LinearRegressor", coefficients=[0.3, -1.2, 0.7], intercepts=[1.5]), [3],
                             "float32"),
}


@pytest.mark.parametrize("case", list(_LINEAR_CASES))
def test_scaler_and_linear_regressor_match_onnxruntime(case: str) -> None:
    """What skl2onnx writes for StandardScaler/MinMaxScaler and LinearRegression/Ridge/Lasso."""
    attrs, shape, dtype = _LINEAR_CASES[case]
    attrs = dict(attrs)
    node = helper.make_node(attrs.pop("op_type"), ["x"], ["y"], domain=ML, **attrs)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    rng = np.random.default_rng(3)
    rows = [4] if len(shape) == 2 else []
    x = (rng.integers(-5, 5, rows + [3]) if dtype == "int64" else rng.standard_normal(rows + [3])).astype(dtype)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = convert(model)(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# --- classifiers (what skl2onnx writes for LogisticRegression, RandomForest, GradientBoosting ...) --
def _classifier_model(op: str, attrs: dict, x_shape, x_type=TensorProto.FLOAT, string_labels: bool = False,
                      extra_nodes=()):
    node = helper.make_node(op, ["x"], ["label", "scores"], domain=ML, **attrs)
    label_type = TensorProto.STRING if string_labels else TensorProto.INT64
    graph = helper.make_graph([node, *extra_nodes], "g", [helper.make_tensor_value_info("x", x_type, x_shape)],
                              [helper.make_tensor_value_info("label", label_type, None),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                             ir_version=8)


def _check_classifier(model, x: np.ndarray) -> None:
    want_label, want_scores = reference_outputs(model, {"x": x}, "ort")
    label, scores = convert(model, simplify=False)(torch.from_numpy(x))
    label = _np(label)
    assert label.shape == want_label.shape
    if want_label.dtype == object:
        assert [str(v) for v in label] == [str(v) for v in want_label]
    else:
        assert label.dtype == np.int64 and np.array_equal(label, want_label)
    assert scores.dtype == torch.float32 and tuple(scores.shape) == want_scores.shape
    np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-5, atol=1e-6)


_LINEAR_CLASSIFIERS = {
    # three classes, SOFTMAX (multinomial LogisticRegression), int labels
    "softmax": (dict(coefficients=[0.3, -1.2, 0.7, 2.0, 0.1, -0.4, -0.5, 0.9, 0.2], intercepts=[0.3, -0.2, 0.1],
                     classlabels_ints=[4, 8, 15], post_transform="SOFTMAX"), ["n", 3], TensorProto.FLOAT),
    # one-vs-rest LOGISTIC, string labels (skl2onnx adds an L1 Normalizer after it)
    "logistic-strings": (dict(coefficients=[0.3, -1.2, 0.7, 2.0, 0.1, -0.4, -0.5, 0.9, 0.2], intercepts=[0.3, -0.2, 0.1],
                              classlabels_strings=["cat", "dog", "eel"], post_transform="LOGISTIC"), ["n", 3],
                         TensorProto.FLOAT),
    # binary: one score column and two labels -> [1 - p, p], p the score or its logistic
    "one-column-logistic": (dict(coefficients=[0.3, -1.2, 0.7], intercepts=[0.1], classlabels_ints=[3, 7],
                                 post_transform="LOGISTIC"), ["n", 3], TensorProto.FLOAT),
    "one-column-softmax-strings": (dict(coefficients=[0.3, -1.2, 0.7], intercepts=[0.1],
                                        classlabels_strings=["no", "yes"], post_transform="SOFTMAX"),
                                   ["n", 3], TensorProto.FLOAT),
    "one-sample-int64": (dict(coefficients=[0.3, -1.2, 0.7, 2.0, 0.1, -0.4], intercepts=[0.3, -0.2],
                              classlabels_ints=[0, 1], post_transform="SOFTMAX_ZERO"), [3], TensorProto.INT64),
}


@pytest.mark.parametrize("case", list(_LINEAR_CLASSIFIERS))
def test_linear_classifier_matches_onnxruntime(case: str) -> None:
    attrs, shape, x_type = _LINEAR_CLASSIFIERS[case]
    model = _classifier_model("LinearClassifier", attrs, shape, x_type, "classlabels_strings" in attrs)
    rng = np.random.default_rng(5)
    rows = [7] if len(shape) == 2 else []
    x = rng.integers(-3, 4, rows + [3]) if x_type == TensorProto.INT64 else rng.standard_normal(rows + [3])
    _check_classifier(model, x.astype(helper.tensor_dtype_to_np_dtype(x_type)))


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_normalizer_matches_onnxruntime(norm: str) -> None:
    node = helper.make_node("Normalizer", ["x"], ["y"], domain=ML, norm=norm)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    x = np.random.default_rng(6).standard_normal((6, 4)).astype(np.float32)
    x[1] = 0.0  # a zero divisor: the row is copied
    x[2] = -np.abs(x[2])  # MAX of a negative row
    x[3] = [1.0, -1.0, 2.0, -2.0]  # L1 and MAX of a row summing to zero
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = convert(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def _random_votes(rng, n_trees: int, n_features: int, class_ids: list[int], depth: int, positive: bool) -> dict:
    """A random legacy tree ensemble whose leaves vote for some of ``class_ids``."""
    a = _random_regressor(rng, n_trees, n_features, n_targets=1, depth=depth)
    leaves = list(zip(a.pop("target_treeids"), a.pop("target_nodeids")))
    del a["target_ids"], a["target_weights"]
    votes: dict[str, list] = {"class_treeids": [], "class_nodeids": [], "class_ids": [], "class_weights": []}
    for tree, node in leaves:
        for cls in rng.choice(class_ids, size=int(rng.integers(1, len(class_ids) + 1)), replace=False):
            weight = float(rng.random()) if positive else float(rng.normal())
            for key, value in zip(votes, (tree, node, int(cls), weight)):
                votes[key].append(value)
    return {**a, **votes}


# (classes, class ids voted for, base values, votes all positive): onnxruntime's branches for two
# classes (one voted class: scikit-learn's GradientBoosting / binary AdaBoost; both: RandomForest).
_TREE_CLASSIFIERS = {
    "three-classes": (3, [0, 1, 2], [0.2, -0.1, 0.05], False),
    "three-classes-two-voted": (3, [0, 2], [], True),
    "two-classes-both-voted": (2, [0, 1], [], True),
    "two-classes-both-voted-two-bases": (2, [0, 1], [0.3, -0.2], False),
    "one-voted-class-margin": (2, [0], [0.25], False),
    "one-voted-class-probability": (2, [1], [], True),
    "one-voted-class-two-bases": (2, [1], [0.1, 0.4], False),
}


@pytest.mark.parametrize("case", list(_TREE_CLASSIFIERS))
@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_tree_ensemble_classifier_matches_onnxruntime(case: str, labels: str) -> None:
    classes, class_ids, base, positive = _TREE_CLASSIFIERS[case]
    rng = np.random.default_rng(len(case) * 7 + len(labels))
    names = ["ant", "bee", "cow"][:classes]
    for transform in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"):
        attrs = _random_votes(rng, n_trees=4, n_features=3, class_ids=class_ids, depth=3, positive=positive)
        attrs.update(post_transform=transform, **({"base_values": base} if base else {}))
        attrs.update({"classlabels_strings": names} if labels == "strings" else {"classlabels_int64s": [3, 7, 9][:classes]})
        model = _classifier_model("TreeEnsembleClassifier", attrs, ["n", 3], string_labels=labels == "strings")
        _check_classifier(model, _features(rng, np.float32))


def test_sklearn_style_pipeline_converts_and_checks_through_the_cli(tmp_path) -> None:
    """Scaler -> LinearClassifier (one-vs-rest LOGISTIC, string labels) -> L1 Normalizer, the graph
    skl2onnx writes for a scaled LogisticRegression with zipmap=False: the CLI converts it with its
    check on, and the module's labels and probabilities are onnxruntime's."""
    from onnx2x.cli import main

    nodes = [helper.make_node("Scaler", ["x"], ["scaled"], domain=ML, offset=[0.1, -0.3, 0.2], scale=[2.0, 0.5, 1.5]),
             helper.make_node("LinearClassifier", ["scaled"], ["label", "raw"], domain=ML, multi_class=1,
                              coefficients=[0.3, -1.2, 0.7, 2.0, 0.1, -0.4, -0.5, 0.9, 0.2], intercepts=[0.3, -0.2, 0.1],
                              classlabels_strings=["cat", "dog", "eel"], post_transform="LOGISTIC"),
             helper.make_node("Normalizer", ["raw"], ["probabilities"], domain=ML, norm="L1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("label", TensorProto.STRING, ["n"]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    path, out = tmp_path / "pipe.onnx", tmp_path / "pipe.pt"
    onnx.save(model, str(path))
    assert main(["torch", str(path), "-o", str(out)]) == 0
    from onnx2x.torch.artifact import load

    x = np.random.default_rng(8).standard_normal((9, 3)).astype(np.float32)
    want_label, want_proba = reference_outputs(model, {"x": x}, "ort")
    label, proba = load(str(out))(torch.from_numpy(x))
    assert [str(v) for v in label] == [str(v) for v in want_label]
    np.testing.assert_allclose(proba.numpy(), want_proba, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(proba.numpy().sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("case", ["floats", "int64", "strings"])
def test_one_hot_encoder_matches_onnxruntime(case: str) -> None:
    """skl2onnx's OneHotEncoder: numbers are truncated before the lookup, unknown values give zeros."""
    if case == "strings":
        attrs, elem = dict(cats_strings=["red", "green", "blue"]), TensorProto.STRING
        x = np.array([["red", "blue"], ["teal", "green"], ["green", "red"]], dtype=object)
    else:
        attrs = dict(cats_int64s=[1, 2, -1, 0])
        elem = TensorProto.FLOAT if case == "floats" else TensorProto.INT64
        x = np.array([[1.7, 2.0, -1.2], [3.0, -1.7, 0.4]], dtype=np.float32 if case == "floats" else np.float64)
        x = x.astype(np.float32) if case == "floats" else np.trunc(x).astype(np.int64)
    node = helper.make_node("OneHotEncoder", ["x"], ["y"], domain=ML, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, [None, x.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    module = convert(model, simplify=False)
    got = module(x if case == "strings" else torch.from_numpy(x))
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), want)
    strict = helper.make_model(helper.make_graph([helper.make_node("OneHotEncoder", ["x"], ["y"], domain=ML, zeros=0,
                                                                   **attrs)], "g", list(graph.input), list(graph.output)),
                               opset_imports=list(model.opset_import), ir_version=8)
    with pytest.raises(ValueError, match="none of the categories"):
        convert(strict, simplify=False)(x if case == "strings" else torch.from_numpy(x))


# --- support vector machines (scikit-learn's SVC, NuSVC, SVR, OneClassSVM through skl2onnx) ------
def _svm_attrs(rng, classes: int, per_class: list[int], features: int, kernel: str, proba: bool) -> dict:
    count = sum(per_class)
    pairs = classes * (classes - 1) // 2
    attrs = dict(kernel_type=kernel, kernel_params=[0.3, 0.5, 3.0], vectors_per_class=per_class,
                 support_vectors=rng.standard_normal(count * features).round(3).tolist(),
                 coefficients=rng.standard_normal((classes - 1) * count).round(3).tolist(),
                 rho=rng.standard_normal(pairs).round(3).tolist())
    if proba:
        attrs.update(prob_a=(-1 - rng.random(pairs)).round(3).tolist(), prob_b=(0.2 * rng.standard_normal(pairs)).round(3).tolist())
    return attrs


_SVM_CLASSIFIERS = {
    "rbf-three-classes-proba": (3, [2, 3, 2], "RBF", True, "NONE"),
    "poly-three-classes": (3, [2, 1, 3], "POLY", False, "NONE"),
    "sigmoid-two-classes-proba": (2, [3, 2], "SIGMOID", True, "NONE"),
    "linear-kernel-two-classes": (2, [2, 2], "LINEAR", False, "NONE"),
    "rbf-two-classes-logistic": (2, [2, 3], "RBF", False, "LOGISTIC"),
    "liblinear-three-classes": (3, [], "LINEAR", False, "SOFTMAX"),
    "liblinear-two-classes": (2, [], "LINEAR", False, "NONE"),
}


@pytest.mark.parametrize("case", list(_SVM_CLASSIFIERS))
@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_svm_classifier_matches_onnxruntime(case: str, labels: str) -> None:
    classes, per_class, kernel, proba, transform = _SVM_CLASSIFIERS[case]
    rng = np.random.default_rng(len(case))
    features = 4
    if per_class:
        attrs = _svm_attrs(rng, classes, per_class, features, kernel, proba)
    else:  # liblinear: one weight row per class, one intercept
        attrs = dict(coefficients=rng.standard_normal(classes * features).round(3).tolist(), rho=[0.25],
                     kernel_params=[0.0, 0.0, 0.0])
    attrs["post_transform"] = transform
    attrs.update({"classlabels_strings": ["ant", "bee", "cow"][:classes]} if labels == "strings"
                 else {"classlabels_ints": [3, 7, 9][:classes]})
    model = _classifier_model("SVMClassifier", attrs, ["n", features], string_labels=labels == "strings")
    _check_classifier(model, rng.standard_normal((23, features)).astype(np.float32))


@pytest.mark.parametrize("case", ["rbf", "poly", "liblinear", "one-class"])
def test_svm_regressor_matches_onnxruntime(case: str) -> None:
    rng = np.random.default_rng(len(case) + 11)
    features, count = 4, 0 if case == "liblinear" else 5
    attrs = dict(kernel_type="POLY" if case == "poly" else "RBF", kernel_params=[0.3, 0.5, 2.0], n_supports=count,
                 coefficients=rng.standard_normal(count or features).round(3).tolist(), rho=[0.1],
                 one_class=int(case == "one-class"))
    if count:
        attrs["support_vectors"] = rng.standard_normal(count * features).round(3).tolist()
    node = helper.make_node("SVMRegressor", ["x"], ["y"], domain=ML, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    x = rng.standard_normal((17, features)).astype(np.float32)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = convert(model)(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (17, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if case == "one-class":
        assert set(np.unique(got)) <= {-1.0, 1.0}


_IMPUTERS = {
    "nan-per-column": (dict(imputed_value_floats=[0.5, -1.0, 2.0], replaced_value_float=float("nan")), "float32"),
    "inf-one-value": (dict(imputed_value_floats=[7.0], replaced_value_float=float("inf")), "float32"),
    "int64": (dict(imputed_value_int64s=[9, 8, 7], replaced_value_int64=-1), "int64"),
}


@pytest.mark.parametrize("case", list(_IMPUTERS))
def test_imputer_matches_onnxruntime(case: str) -> None:
    """scikit-learn's SimpleImputer (NaN) and PowerTransformer's guard (inf) through skl2onnx."""
    attrs, dtype = _IMPUTERS[case]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("Imputer", ["x"], ["y"], domain=ML, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["n", 3])],
                              [helper.make_tensor_value_info("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    rng = np.random.default_rng(9)
    if dtype == "int64":
        x = rng.integers(-1, 3, (8, 3)).astype(np.int64)
    else:
        x = rng.standard_normal((8, 3)).astype(np.float32)
        x[rng.random(x.shape) < 0.3] = np.nan
        x[0, 1] = np.inf
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = convert(model)(torch.from_numpy(x)).numpy()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


# --- text (skl2onnx's CountVectorizer / TfidfVectorizer: Reshape, Tokenizer, Flatten, TfIdfVectorizer) --
_TOKENIZERS = {
    "expression": dict(tokenexp="[a-zA-Z0-9_]+", mincharnum=1, mark=0, pad_value="#"),
    "expression-long-words-marked": dict(tokenexp=r"\w+", mincharnum=3, mark=1, pad_value="_"),
    "separators": dict(separators=[" ", ",", "ab"], mincharnum=1, mark=0, pad_value="#"),
    "separators-min-length": dict(separators=[" +"], mincharnum=3, mark=0, pad_value="#"),
    "characters": dict(separators=[""], mincharnum=1, mark=1, pad_value="#"),
}


@pytest.mark.parametrize("case", list(_TOKENIZERS))
@pytest.mark.parametrize("rank", [1, 2])
def test_tokenizer_matches_onnxruntime(case: str, rank: int) -> None:
    texts = ["the cat sat, on  the mat", "grab a cab", "", "x,y z", "naïve café, ok"]
    x = np.array(texts if rank == 1 else [texts[:2] + [""], texts[2:]], dtype=object)
    node = helper.make_node("Tokenizer", ["x"], ["y"], domain="com.microsoft", **_TOKENIZERS[case])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.STRING, [None] * rank)],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=8)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = np.asarray(convert(model, simplify=False)(x))
    assert got.shape == want.shape
    assert [str(v) for v in got.reshape(-1)] == [str(v) for v in want.reshape(-1)]


def test_text_classifier_pipeline_converts_and_checks_through_the_cli(tmp_path) -> None:
    """The graph skl2onnx writes for CountVectorizer + LogisticRegression (its StringNormalizer left
    out: onnxruntime needs an installed en_US.UTF-8 locale for it): string reshapes, a contrib
    Tokenizer whose output type nothing declares, n-gram counts and a linear classifier. The CLI
    converts it with its check on; labels and probabilities are onnxruntime's."""
    from onnx2x.cli import main
    from onnx2x.torch.artifact import load

    pool = ["cat", "dog", "fox", "quick", "the"]
    nodes = [helper.make_node("Reshape", ["text", "flat_shape"], ["flat"]),
             helper.make_node("Tokenizer", ["flat"], ["tokens"], domain="com.microsoft", tokenexp="[a-zA-Z0-9_]+",
                              mincharnum=1, mark=0, pad_value="#"),
             helper.make_node("Flatten", ["tokens"], ["rows"]),
             helper.make_node("TfIdfVectorizer", ["rows"], ["counts"], mode="TF", min_gram_length=1, max_gram_length=1,
                              max_skip_count=0, ngram_counts=[0], ngram_indexes=list(range(len(pool))), pool_strings=pool),
             helper.make_node("LinearClassifier", ["counts"], ["label", "probabilities"], domain=ML,
                              coefficients=[0.5, -0.4, 0.3, 0.8, -0.1, -0.5, 0.4, -0.3, -0.8, 0.1], intercepts=[0.1, -0.1],
                              classlabels_strings=["animal", "other"], post_transform="SOFTMAX")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("text", TensorProto.STRING, [None, 1])],
                              [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
                              [numpy_helper.from_array(np.array([-1], np.int64), "flat_shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1),
                                                    helper.make_opsetid("com.microsoft", 1)], ir_version=8)
    path, out = tmp_path / "text.onnx", tmp_path / "text.pt"
    onnx.save(model, str(path))
    assert main(["torch", str(path), "-o", str(out)]) == 0
    x = np.array([["the quick fox"], ["a dog and the cat"], ["nothing here"], ["fox fox fox"]], dtype=object)
    want_label, want_proba = reference_outputs(model, {"text": x}, "ort")
    label, proba = load(str(out))(x)
    assert [str(v) for v in label] == [str(v) for v in want_label]
    np.testing.assert_allclose(proba.numpy(), want_proba, rtol=1e-6, atol=1e-7)


def test_array_feature_extractor_picks_string_labels_as_onnxruntime() -> None:
    """skl2onnx's KNeighborsClassifier with string classes picks its labels from a string constant
    by ArrayFeatureExtractor: that runtime helper took only tensors."""
    nodes = [helper.make_node("Constant", [], ["classes"], value=helper.make_tensor("c", TensorProto.STRING, [3],
                                                                                   [b"no", b"maybe", b"yes"])),
             helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0),
             helper.make_node("ArrayFeatureExtractor", ["classes", "best"], ["picked"], domain=ML),
             helper.make_node("Reshape", ["picked", "flat"], ["label"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("label", TensorProto.STRING, ["n"])],
                              [numpy_helper.from_array(np.array([-1], np.int64), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    x = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    want = reference_outputs(model, {"scores": x}, "ort")[0]
    got = convert(model, simplify=False)(torch.from_numpy(x))
    assert [str(v) for v in np.asarray(got).reshape(-1)] == [str(v) for v in want.reshape(-1)]


@pytest.mark.parametrize("widths", [[2, 1, 3], [1, 2, 2], [3, 1, 4]])
def test_feature_vectorizer_matches_onnxruntime(widths) -> None:
    """Inputs side by side, each cut or zero-padded to its declared width."""
    rng = np.random.default_rng(sum(widths))
    xs = [rng.standard_normal((4, w)).astype(np.float32) for w in (2, 1, 3)]
    names = ["a", "b", "c"]
    node = helper.make_node("FeatureVectorizer", names, ["y"], domain=ML, inputdimensions=widths)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", x.shape[1]])
                                            for n, x in zip(names, xs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    want = reference_outputs(model, dict(zip(names, xs)), "ort")[0]
    got = convert(model)(*[torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("direction", ["strings-to-ints", "ints-to-strings"])
def test_category_mapper_matches_onnxruntime(direction: str) -> None:
    attrs = dict(cats_strings=["a", "b", "a", "c"], cats_int64s=[10, 20, 30, 40])  # "a" twice: the later wins
    if direction == "strings-to-ints":
        attrs["default_int64"] = 7
        x, elem, out = np.array([["a", "b"], ["zz", "c"]], dtype=object), TensorProto.STRING, TensorProto.INT64
    else:
        attrs["default_string"] = "none"
        x, elem, out = np.array([10, 40, 5, 30], dtype=np.int64), TensorProto.INT64, TensorProto.STRING
    node = helper.make_node("CategoryMapper", ["x"], ["y"], domain=ML, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(x.shape))],
                              [helper.make_tensor_value_info("y", out, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)],
                              ir_version=8)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    got = np.asarray(convert(model, simplify=False)(x if x.dtype == object else torch.from_numpy(x)))
    assert got.shape == want.shape
    assert [str(v) for v in got.reshape(-1)] == [str(v) for v in want.reshape(-1)]


@pytest.mark.parametrize("action", ["LOWER", "UPPER"])
def test_string_normalizer_changes_case_character_by_character_as_onnxruntime(action: str) -> None:
    """Python's whole-string case mapping differed from onnxruntime's per-character one: ß -> SS,
    İ -> i plus a combining dot, a final Σ -> ς. (The C.UTF-8 locale: en_US.UTF-8 is rarely
    installed where tests run, and maps these characters the same way.)"""
    x = np.array(["Straße ÉCOLE", "İstanbul ǅ ﬁne Σ", "plain"], dtype=object)
    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action=action, locale="C.UTF-8")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.STRING, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    want = reference_outputs(model, {"x": x}, "ort")[0]
    assert [str(v) for v in np.asarray(convert(model, simplify=False)(x))] == [str(v) for v in want]
