"""compare(): per-output figures and tolerances, checked against numpy computed independently."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from common.verify.compare import (BFLOAT16, DEFAULT_TOLERANCES, EXACT, compare, compare_arrays, default_tolerance,
                                   tolerance_for)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_identical_arrays_have_zero_error():
    ref = _rng().normal(size=(2, 3, 4)).astype(np.float32)
    c = compare_arrays(ref, ref.copy(), name="y")
    assert c.ok and c.shape_ok and c.dtype_ok
    assert (c.max_abs, c.max_rel, c.mse, c.n_bad) == (0.0, 0.0, 0.0, 0)
    assert c.cosine == pytest.approx(1.0, abs=1e-12)
    assert c.n_elements == 24


def test_figures_match_numpy():
    rng = _rng(1)
    ref = rng.normal(size=(64, 32)).astype(np.float32)
    cand = ref + rng.normal(scale=1e-4, size=ref.shape).astype(np.float32)
    c = compare_arrays(ref, cand, rtol=1e-4, atol=1e-5)
    r64, c64 = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(c64 - r64)
    assert c.max_abs == pytest.approx(diff.max(), rel=1e-12)
    assert c.mse == pytest.approx(np.mean(diff ** 2), rel=1e-12)
    scale = np.abs(r64).max()
    assert c.scale == pytest.approx(scale) and c.max_rel == pytest.approx(diff.max() / scale, rel=1e-12)
    cos = np.dot(r64.ravel(), c64.ravel()) / (np.linalg.norm(r64) * np.linalg.norm(c64))
    assert c.cosine == pytest.approx(cos, abs=1e-12)
    bound = 1e-5 + 1e-4 * (np.abs(r64) + scale)
    assert c.worst == pytest.approx((diff / bound).max(), rel=1e-12)
    assert c.n_bad == int(np.count_nonzero(diff > bound)) == 0 and c.ok
    # ten times the noise: elements beyond the scale-aware bound are counted, and refused
    cand = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    c = compare_arrays(ref, cand, rtol=1e-4, atol=1e-5)
    diff = np.abs(cand.astype(np.float64) - r64)
    expected_bad = int(np.count_nonzero(diff > 1e-5 + 1e-4 * (np.abs(r64) + scale)))
    assert expected_bad > 3
    assert c.n_bad == expected_bad
    assert c.bad_fraction == pytest.approx(expected_bad / ref.size)
    assert not c.ok and "out of tolerance" in c.problem()


def test_one_wrong_channel_is_counted():
    ref = _rng(2).uniform(-1, 1, size=(1, 8, 5, 5)).astype(np.float32)
    cand = ref.copy()
    cand[0, 3] *= -1  # a sign error on one channel
    c = compare_arrays(ref, cand)
    scale = float(np.abs(ref).max())
    assert c.n_bad == int(np.count_nonzero(np.abs(2 * ref[0, 3]) > 1e-5 + 1e-4 * (np.abs(ref[0, 3]) + scale)))
    assert c.max_abs == pytest.approx(float(np.abs(2 * ref[0, 3]).max()))
    assert not c.ok


def test_default_tolerances_by_dtype():
    assert default_tolerance(np.float32) == DEFAULT_TOLERANCES["float32"]
    assert (DEFAULT_TOLERANCES["float32"].atol, DEFAULT_TOLERANCES["float32"].rtol) == (1e-5, 1e-4)
    assert default_tolerance(np.float16) .atol > default_tolerance(np.float32).atol
    assert default_tolerance(BFLOAT16).atol >= default_tolerance(np.float16).atol
    # the pair is judged by its less precise member
    assert default_tolerance(np.float32, np.float16) == DEFAULT_TOLERANCES["float16"]
    assert default_tolerance(np.int64) is EXACT and default_tolerance(np.bool_) is EXACT
    # user values replace float defaults, never the exactness of integers
    assert tolerance_for(np.float32, rtol=1e-3, atol=1e-2).atol == 1e-2
    assert tolerance_for(np.int32, rtol=1e-3, atol=1.0) is EXACT


def test_float16_error_passes_where_float32_would_not():
    ref = np.linspace(-1, 1, 101)
    cand = ref + 5e-4
    assert compare_arrays(ref.astype(np.float16), cand.astype(np.float16)).ok
    assert not compare_arrays(ref.astype(np.float32), cand.astype(np.float32)).ok


def test_bfloat16_is_supported():
    ref = np.linspace(-2, 2, 50).astype(np.float32)
    c = compare_arrays(ref.astype(BFLOAT16), (ref + 1e-3).astype(BFLOAT16))
    assert c.ref_dtype == "bfloat16" and c.ok
    assert c.max_abs == pytest.approx(float(np.max(np.abs((ref + 1e-3).astype(BFLOAT16).astype(np.float64)
                                                          - ref.astype(BFLOAT16).astype(np.float64)))))


def test_integers_compare_exactly():
    ref = np.arange(10, dtype=np.int64)
    cand = ref.copy()
    cand[4] += 1
    c = compare_arrays(ref, cand, atol=5.0, rtol=1.0)
    assert c.n_bad == 1 and not c.ok and c.max_abs == 1.0
    big = np.array([2**62 + 1], dtype=np.int64)
    assert not compare_arrays(big, big - 1).ok  # float64 rounding would hide this


def test_strings_compare_for_equality_and_say_so():
    """String outputs (a classifier's labels) were compared, but a match read "not compared" and a
    mismatch crashed while wording the failure."""
    labels = np.array(["cat", "dog", "eel"], dtype=object)
    same = compare_arrays(labels, labels.copy())
    assert same.ok and same.figures() == "equal"
    wrong = compare_arrays(labels, np.array(["cat", "dog", "cow"], dtype=object))
    assert not wrong.ok
    assert wrong.problem() == wrong.figures() == "1 of 3 elements differ"


def test_nan_and_inf():
    ref = np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    assert compare_arrays(ref, ref.copy()).ok
    c = compare_arrays(ref, np.array([1.0, 0.0, np.inf, -np.inf], dtype=np.float32))
    assert not c.ok and c.n_bad == 1 and math.isinf(c.max_abs)
    c = compare_arrays(ref, np.array([1.0, np.nan, -np.inf, -np.inf], dtype=np.float32))
    assert c.n_bad == 1


def test_shape_and_dtype_checks():
    ref = np.zeros((2, 3), np.float32)
    c = compare_arrays(ref, np.zeros((3, 2), np.float32))
    assert not c.ok and not c.shape_ok and c.max_abs == 0.0 and "shape" in c.problem()
    c = compare_arrays(ref, np.zeros((4,), np.float32))
    assert not c.ok and c.max_abs is None and c.n_bad is None
    c = compare_arrays(ref, np.zeros((2, 3), np.float64))
    assert not c.ok and not c.dtype_ok and "dtype" in c.problem()
    assert compare_arrays(ref, np.zeros((2, 3), np.float64), check_dtype=False).ok


def test_cosine_of_orthogonal_and_opposite_vectors():
    a = np.array([1.0, 0.0], np.float32)
    assert compare_arrays(a, np.array([0.0, 1.0], np.float32)).cosine == pytest.approx(0.0)
    assert compare_arrays(a, -a).cosine == pytest.approx(-1.0)
    assert compare_arrays(np.zeros(3), np.zeros(3)).cosine == 1.0


def test_compare_matches_by_name_then_by_position():
    rng = _rng(3)
    a, b = rng.normal(size=3).astype(np.float32), rng.normal(size=4).astype(np.float32)
    rep = compare({"a": a, "b": b}, {"b": b, "a": a})
    assert rep.ok and [o.name for o in rep] == ["a", "b"]
    rep = compare({"a_output": a, "b_output": b}, {"x": a, "y": b + 1})
    assert [o.name for o in rep] == ["a_output", "b_output"]
    assert rep["a_output"].ok and not rep["b_output"].ok
    assert rep["b_output"].cand_name == "y" and rep["b_output"].max_abs == pytest.approx(1.0)
    assert rep.summary().startswith("1 of 2 outputs differ")


def test_missing_and_extra_outputs_fail():
    a = np.ones(3, np.float32)
    rep = compare([a, a], [a])
    assert not rep.ok and rep.failed[0].name == "output_1" and "missing" in rep.failed[0].problem()
    rep = compare([a], [a, a])
    assert not rep.ok and "extra" in rep.failed[0].problem()


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = compare_arrays(ref, torch.from_numpy(ref) * 2)
    assert c.max_abs == pytest.approx(5.0)


def test_to_dict_is_strict_json():
    ref = np.array([1.0, 2.0], np.float32)
    rep = compare([ref], [np.array([1.0, np.inf], np.float32)])
    text = json.dumps(rep.to_dict(), allow_nan=False)
    data = json.loads(text)["outputs"][0]
    assert data["max_abs"] == "inf" and data["ok"] is False and data["n_bad"] == 1


def test_a_sequence_output_that_agrees_is_one_line_and_a_differing_item_is_named():
    """A ZipMap output spread into NAME#length, NAME[k]#keys and NAME[k] entries printed one
    clause per row in the CLI's line; agreeing items now make one clause, a differing one its own."""
    from common.verify.verdict import judge_conversion

    rows = [np.array([0.25, 0.75], np.float32), np.array([0.5, 0.5], np.float32)]
    reference = {"label": np.array([1, 0]), "probs#length": np.asarray(2), "probs[0]#keys": np.array([3, 7]),
                 "probs[0]": rows[0], "probs[1]#keys": np.array([3, 7]), "probs[1]": rows[1]}
    ok = judge_conversion(reference, dict(reference), reference_name="onnxruntime", inputs={})
    assert ok.ok and ok.lines() == ["label (2,): equal", "probs (2 items): worst max error 0 of scale 0.75 (max-abs 0)"]
    wrong = dict(reference, **{"probs[1]": np.array([0.9, 0.1], np.float32)})
    bad = judge_conversion(reference, wrong, reference_name="onnxruntime", inputs={})
    assert not bad.ok
    assert any(line.startswith("probs[1] (2,): ") for line in bad.lines())
    assert "probs (1 item): max error 0 of scale 0.75" in " ".join(bad.lines())
