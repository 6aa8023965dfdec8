"""Inputs: seeded random data in meaningful ranges, user files, images."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.errors import ModelLoadError, ShapeError
from common.verify.inputs import (ImageOptions, InputSpec, load_image, prepare_inputs, random_inputs,
                                  specs_from_mxnet_json, specs_from_onnx)
from common.verify.runners import OnnxRuntimeRunner
from tests.support.verify_models import models_dir, small_cnn


def _gather_model(rows: int = 7) -> onnx.ModelProto:
    table = numpy_helper.from_array(np.arange(rows * 4, dtype=np.float32).reshape(rows, 4), "table")
    nodes = [helper.make_node("Gather", ["table", "idx"], ["emb"], axis=0),
             helper.make_node("Bernoulli", ["p"], ["draw"], seed=1.0),
             helper.make_node("Sqrt", ["v"], ["root"])]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["n", 5]),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, [50]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [50])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("draw", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("root", TensorProto.FLOAT, None)],
        [table])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_random_inputs_respect_ranges_and_run():
    model = _gather_model(rows=7)
    specs = specs_from_onnx(model, {"idx": (40, 5)})
    by_name = {s.name: s for s in specs}
    assert (by_name["idx"].low, by_name["idx"].high, by_name["idx"].dtype) == (0, 7, "int64")
    arrays = random_inputs(specs, seed=3)
    idx = arrays["idx"]
    assert idx.dtype == np.int64 and idx.shape == (40, 5)
    assert idx.min() >= 0 and idx.max() <= 6 and len(np.unique(idx)) == 7  # in range, and the range is used
    assert arrays["p"].min() >= 0.0 and arrays["p"].max() <= 1.0
    assert arrays["v"].min() > 0.0
    out = OnnxRuntimeRunner(model).run(arrays).outputs
    np.testing.assert_array_equal(out["emb"], np.take(np.arange(28, dtype=np.float32).reshape(7, 4), idx, axis=0))
    np.testing.assert_allclose(out["root"], np.sqrt(arrays["v"]), rtol=1e-6)


def test_random_inputs_are_seeded():
    specs = specs_from_onnx(small_cnn())
    a, b, c = random_inputs(specs, 0), random_inputs(specs, 0), random_inputs(specs, 1)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    assert a["x"].dtype == np.float32 and a["x"].min() >= -1 and a["x"].max() <= 1


def test_symbolic_dims_need_a_shape():
    specs = specs_from_onnx(small_cnn(batch="N"))
    with pytest.raises(ShapeError, match="--input-shape x:N,3,8,8"):
        random_inputs(specs)
    assert random_inputs(specs_from_onnx(small_cnn(batch="N"), {"x": (2, 3, 8, 8)}))["x"].shape == (2, 3, 8, 8)
    with pytest.raises(ShapeError, match="not an input"):
        specs_from_onnx(small_cnn(), {"y": (1,)})


def test_bool_and_int_inputs():
    specs = [InputSpec("m", (1000,), "bool"), InputSpec("k", (1000,), "int32")]
    arrays = random_inputs(specs, 0)
    assert arrays["m"].dtype == np.bool_ and 0 < arrays["m"].sum() < 1000
    assert arrays["k"].dtype == np.int32 and arrays["k"].min() >= 0 and arrays["k"].max() < 10


def test_npy_and_npz_inputs(tmp_path):
    specs = specs_from_onnx(small_cnn())
    x = np.random.default_rng(5).normal(size=(1, 3, 8, 8))
    np.save(tmp_path / "x.npy", x)  # float64: cast to the model's float32
    prepared = prepare_inputs(specs, [str(tmp_path / "x.npy")])
    np.testing.assert_array_equal(prepared.arrays["x"], x.astype(np.float32))
    assert prepared.sources["x"].startswith("file ")
    np.savez(tmp_path / "in.npz", x=x.astype(np.float32), unrelated=np.zeros(2))
    prepared = prepare_inputs(specs, [str(tmp_path / "in.npz")])
    np.testing.assert_array_equal(prepared.arrays["x"], x.astype(np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 9, 9), np.float32))
    with pytest.raises(ShapeError, match=r"shape \(1, 3, 9, 9\)"):
        prepare_inputs(specs, [f"x={tmp_path / 'bad.npy'}"])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelLoadError, match="object arrays are refused"):
        prepare_inputs(specs, [str(tmp_path / "obj.npy")])
    with pytest.raises(ShapeError, match="not an input"):
        prepare_inputs(specs, [f"nope={tmp_path / 'x.npy'}"])


def test_mxnet_json_specs_skip_params_and_labels():
    mtcnn = models_dir() / "mxnet" / "mtcnn"
    specs = specs_from_mxnet_json(mtcnn / "det2-symbol.json", input_shapes={"data": (1, 3, 24, 24)})
    assert [(s.name, s.shape, s.dtype) for s in specs] == [("data", (1, 3, 24, 24), "float32")]
    graph = {"nodes": [{"op": "null", "name": "tokens", "inputs": []},
                       {"op": "null", "name": "embed_weight", "inputs": []},
                       {"op": "Embedding", "name": "embed", "attrs": {"input_dim": "11", "output_dim": "4"},
                        "inputs": [[0, 0, 0], [1, 0, 0]]}],
             "heads": [[2, 0, 0]]}
    (spec,) = specs_from_mxnet_json(graph, ["embed_weight"], {"tokens": (300,)})
    values = random_inputs([spec])["tokens"]
    assert values.dtype == np.float32 and np.all(values == np.round(values))
    assert values.min() >= 0 and values.max() <= 10


def test_image_input_matches_manual_preprocessing():
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    photo = models_dir() / "mxnet" / "mtcnn" / "test.jpg"
    got = load_image(photo, (2, 3, 24, 32), ImageOptions(channel_order="BGR", mean=(127.5,), std=(128.0,)))
    img = mx.image.imresize(mx.image.imdecode(photo.read_bytes()), 32, 24).asnumpy().astype(np.float64)
    expected = ((img[:, :, ::-1] - 127.5) / 128.0).transpose(2, 0, 1)
    assert got.shape == (2, 3, 24, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(got[0], got[1])
    nhwc = load_image(photo, (1, 24, 32, 3), ImageOptions(layout="NHWC", mean=(1.0, 2.0, 3.0)))
    np.testing.assert_allclose(nhwc[0], img - np.array([1.0, 2.0, 3.0]), rtol=1e-6)
    specs = [InputSpec("data", (1, 3, 24, 32))]
    prepared = prepare_inputs(specs, [str(photo)])
    assert prepared.sources["data"] == f"image {photo}"


def test_image_without_mxnet_is_a_clear_error(monkeypatch):
    import mx2onnx_patches.mxnet_import as mi

    def missing():
        raise mi.MXNetMissingError(mi.INSTALL_HINT)

    monkeypatch.setattr(mi, "import_mxnet", missing)
    photo = models_dir() / "mxnet" / "mtcnn" / "test.jpg"
    with pytest.raises(ModelLoadError, match="needs MXNet.*pass the input as .npy or .npz"):
        load_image(photo, (1, 3, 12, 12))
    with pytest.raises(ShapeError, match="4-D"):
        load_image(photo, (3, 12, 12))


def test_string_inputs_are_drawn_from_the_graphs_own_vocabulary():
    """String inputs could not be drawn at all: the check was skipped for every scikit-learn
    graph with a categorical or text input. Now a categorical input draws the graph's categories
    (and, about one time in eight, a value it lacks), and a tokenized one several such words."""
    from onnx import TensorProto, helper

    from common.verify.inputs import random_inputs, specs_from_onnx

    ml = helper.make_opsetid("ai.onnx.ml", 1)
    encoder = helper.make_node("OneHotEncoder", ["colour"], ["hot"], domain="ai.onnx.ml", cats_strings=["red", "blue"])
    words = helper.make_node("Tokenizer", ["text"], ["tokens"], domain="com.microsoft", tokenexp="\\\\w+", mincharnum=1,
                             mark=0, pad_value="#")
    counts = helper.make_node("TfIdfVectorizer", ["tokens"], ["counts"], mode="TF", min_gram_length=1,
                              max_gram_length=1, max_skip_count=0, ngram_counts=[0], ngram_indexes=[0, 1],
                              pool_strings=["cat", "dog"])
    graph = helper.make_graph([encoder, words, counts], "g",
                              [helper.make_tensor_value_info("colour", TensorProto.STRING, [40]),
                               helper.make_tensor_value_info("text", TensorProto.STRING, [40])],
                              [helper.make_tensor_value_info("hot", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("counts", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), ml,
                                                    helper.make_opsetid("com.microsoft", 1)], ir_version=8)
    specs = {s.name: s for s in specs_from_onnx(model)}
    assert specs["colour"].words == ("blue", "cat", "dog", "red") and specs["text"].text
    drawn = random_inputs(list(specs.values()), seed=3)
    vocabulary = {"blue", "cat", "dog", "red", "zzunseen"}
    assert drawn["colour"].dtype == object and set(drawn["colour"]) <= vocabulary
    assert {"red", "blue"} & set(drawn["colour"]) and "zzunseen" in set(drawn["colour"])
    assert all(set(t.split()) <= vocabulary for t in drawn["text"]) and max(len(t.split()) for t in drawn["text"]) > 1
    again = random_inputs(list(specs_from_onnx(model)), seed=3)
    assert list(again["text"]) == list(drawn["text"])  # seeded
