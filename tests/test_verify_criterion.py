"""The verification criterion, rule by rule (common/verify/compare.py, judge.py, rowsets.py, sensitivity.py).

Each rule is checked in both directions: what float32 rounding does must pass, what a wrong
conversion does must fail.
"""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from common.verify.compare import OUTLIER_FACTOR, SENSITIVITY_FACTOR, allowed_outliers, compare_arrays
from common.verify.judge import judge_outputs
from common.verify.locator import compare_intermediate
from common.verify.rowsets import row_axis, selection_groups
from common.verify.sensitivity import JITTER, jitter_inputs, measure


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- scale-aware bounds -------------------------------------------------------------------------
def test_error_at_a_near_zero_element_is_judged_against_the_tensor_scale():
    """ResNeSt-like logits: 2e-5 of the output's scale at an element that cancelled to ~0 passes;
    the element-wise allclose rule (1e-4 + 1e-4 |ref|) refused it."""
    ref = _rng().normal(0, 20, size=1000).astype(np.float32)
    ref[17] = 1e-3
    cand = ref.copy()
    cand[17] += 2e-5 * np.abs(ref).max()
    assert not np.allclose(cand, ref, rtol=1e-4, atol=1e-4)
    c = compare_arrays(ref, cand)
    assert c.ok and c.max_rel == pytest.approx(2e-5, rel=1e-3)


def test_an_error_of_a_thousandth_of_the_scale_fails():
    ref = _rng(1).normal(0, 20, size=1000).astype(np.float32)
    cand = (ref + 1e-3 * np.abs(ref).max() * _rng(2).choice([-1, 1], size=ref.shape)).astype(np.float32)
    c = compare_arrays(ref, cand)
    assert not c.ok and c.n_bad == 1000 and "out of tolerance" in c.problem()


def test_huge_outputs_keep_their_relative_accuracy():
    """Random-init deep nets reach 1e12: float32 rounding there is ~1e5 absolute and passes, a 1%
    error does not."""
    ref = (_rng(3).normal(size=500) * 1e12).astype(np.float32)
    noise = ref * _rng(4).normal(0, 3e-7, size=ref.shape).astype(np.float32)
    assert compare_arrays(ref, ref + noise).ok
    assert not compare_arrays(ref, ref * np.float32(1.01)).ok


# --- outliers -------------------------------------------------------------------------------------
def test_a_few_outliers_pass_in_large_tensors_only():
    n = 20000
    ref = _rng(5).uniform(-1, 1, size=n).astype(np.float32)
    bound = 1e-5 + 1e-4 * (np.abs(ref) + np.abs(ref).max())
    cand = ref.copy()
    idx = np.arange(allowed_outliers(n))
    cand[idx] += (bound[idx] * 5).astype(np.float32)  # within OUTLIER_FACTOR
    c = compare_arrays(ref, cand)
    assert c.ok and c.n_bad == allowed_outliers(n) == 2
    cand[idx[0]] = ref[idx[0]] + bound[idx[0]] * (OUTLIER_FACTOR * 2)  # too far
    assert not compare_arrays(ref, cand).ok
    cand = ref.copy()
    cand[:3] += (bound[:3] * 2).astype(np.float32)  # one more than allowed
    assert not compare_arrays(ref, cand).ok
    small = ref[:100].copy()
    small[0] += 1.0
    assert allowed_outliers(100) == 0 and not compare_arrays(ref[:100], small).ok


# --- strict parts ---------------------------------------------------------------------------------
def test_equal_infinities_have_finite_figures():
    ref = np.array([np.inf, -np.inf, 1.0, np.nan], np.float32)
    c = compare_arrays(ref, ref.copy())
    assert c.ok and c.max_abs == 0.0 and math.isfinite(c.max_rel)


def test_never_inf_for_two_finite_tensors():
    ref = np.zeros(8, np.float32)
    cand = np.full(8, 3.0, np.float32)
    for c in (compare_arrays(ref, cand), compare_intermediate(ref, cand, name="t")):
        assert not c.ok and c.max_abs == 3.0 and c.max_rel is None and math.isfinite(c.worst)
        text = json.dumps(c.to_dict(), allow_nan=False)
        assert "inf" not in text and "max-abs 3" in c.figures()


def test_integers_booleans_and_dtypes_are_exact():
    ref = np.arange(12, dtype=np.int64)
    cand = ref.copy()
    cand[3] = 4
    assert not compare_arrays(ref, cand).ok
    assert not compare_arrays(np.ones(3, bool), np.array([True, False, True])).ok
    assert not compare_arrays(ref.astype(np.float32), ref.astype(np.float64)).ok


# --- sensitivity ------------------------------------------------------------------------------------
def _chaotic(x: np.ndarray) -> np.ndarray:
    """An ill-conditioned 'model': its output moves ~1e-2 when its input moves by 1e-6."""
    return np.sin(x.astype(np.float64) * 3e4).astype(np.float32)


def test_jitter_moves_float_inputs_by_one_part_in_a_million_only():
    x = _rng(6).uniform(-1, 1, size=100).astype(np.float32)
    ids = np.arange(5, dtype=np.int64)
    moved = jitter_inputs({"x": x, "ids": ids}, 1.0)
    assert np.array_equal(moved["ids"], ids)
    rel = np.abs(moved["x"].astype(np.float64) / x - 1)
    assert 0.5 * JITTER < rel.max() <= 1.5 * JITTER


def test_an_ill_conditioned_reference_widens_the_bound_and_says_so():
    x = _rng(7).uniform(-1, 1, size=(1, 256)).astype(np.float32)
    ref = {"y": _chaotic(x)}

    def rerun(inputs):
        return {"y": _chaotic(inputs["x"])}

    moved = measure(rerun, {"x": x}).max_change("y", ref["y"])
    assert moved > 1e-3
    within = {"y": ref["y"] + np.float32(0.5 * moved)}
    report = judge_outputs(ref, within, rerun_reference=rerun, inputs={"x": x}, reference_name="MXNet")
    assert report.ok and report["y"].sensitivity == pytest.approx(moved)
    assert len(report.notes) == 1 and "MXNet is sensitive" in report.notes[0] and "judged against that" in report.notes[0]
    beyond = {"y": ref["y"] + np.float32(2 * SENSITIVITY_FACTOR * moved)}
    report = judge_outputs(ref, beyond, rerun_reference=rerun, inputs={"x": x})
    assert not report.ok and "larger still" in report.notes[0]


def test_a_reference_that_is_not_deterministic_is_named_so():
    """Dropout left in training mode: two runs on the same inputs differ; that is said, not
    reported as sensitivity to input noise."""
    x = _rng(9).uniform(-1, 1, size=(1, 64)).astype(np.float32)
    draws = np.random.default_rng(1)

    def dropout(inputs):
        return {"y": inputs["x"] * (draws.random(inputs["x"].shape) > 0.5) * 2}

    ref = dropout({"x": x})
    report = judge_outputs(ref, dropout({"x": x}), rerun_reference=dropout, inputs={"x": x}, reference_name="onnxruntime")
    assert len(report.notes) == 1 and "onnxruntime is not deterministic" in report.notes[0]
    assert "sensitive" not in report.notes[0]


def test_a_chaotic_reference_is_said_to_leave_the_check_blind():
    """A reference that moves by its own scale under jitter widens the bound so far that the
    comparison means nothing: the line says so (no false alarm, no silent pass)."""
    x = _rng(10).uniform(-1, 1, size=(1, 64)).astype(np.float32)

    def chaos(inputs):
        return {"y": np.sin(inputs["x"].astype(np.float64) * 1e9).astype(np.float32)}

    ref = chaos({"x": x})
    report = judge_outputs(ref, {"y": -ref["y"]}, rerun_reference=chaos, inputs={"x": x}, reference_name="MXNet")
    assert report.ok and len(report.notes) == 1
    assert "unable to tell a wrong conversion from a right one" in report.notes[0]


def test_a_well_conditioned_reference_is_not_widened():
    x = _rng(8).uniform(-1, 1, size=(1, 64)).astype(np.float32)
    ref = {"y": 2 * x}
    wrong = {"y": 2 * x + np.float32(0.01)}
    report = judge_outputs(ref, wrong, rerun_reference=lambda i: {"y": 2 * i["x"]}, inputs={"x": x})
    assert not report.ok and not report.notes


def test_integer_outputs_may_differ_as_often_as_the_reference_itself_flips():
    """An argmax over near-tied scores: as many flips as the reference makes under jitter (times
    the factor) pass; a wrong conversion flips far more."""
    x = _rng(12).uniform(0, 1, size=(100, 3)).astype(np.float32)
    x[0, 1] = x[0, 0] = 0.9  # one exact tie, broken by the jitter
    x[0, 2] = 0.1

    def argmax(inputs):
        return {"i": np.argmax(inputs["x"], axis=1)}

    ref = argmax({"x": x})
    assert measure(argmax, {"x": x}).mismatches("i", ref["i"]) == 1
    one_flip = {"i": ref["i"].copy()}
    one_flip["i"][0] = 1 - ref["i"][0]
    report = judge_outputs(ref, one_flip, rerun_reference=argmax, inputs={"x": x})
    assert report.ok and "1 of 100 elements change" in report.notes[0]
    many = {"i": (ref["i"] + 1) % 3}
    assert not judge_outputs(ref, many, rerun_reference=argmax, inputs={"x": x}).ok


# --- detections as sets ------------------------------------------------------------------------------
def _detections(scores: list[float], boxes: np.ndarray, pad: int = 2) -> dict[str, np.ndarray]:
    n = len(scores)
    ids = np.arange(n, dtype=np.float32)[None, :, None] % 3
    out = {"ids": np.full((1, n + pad, 1), -1, np.float32), "scores": np.full((1, n + pad, 1), -1, np.float32),
           "boxes": np.full((1, n + pad, 4), -1, np.float32)}
    out["ids"][0, :n], out["scores"][0, :n, 0], out["boxes"][0, :n] = ids[0], scores, boxes
    return out


def test_near_tied_detections_in_another_order_pass():
    boxes = _rng(9).uniform(0, 300, size=(4, 4)).astype(np.float32)
    ref = _detections([0.9, 0.80000001, 0.8, 0.3], boxes)
    swapped = {k: v[:, [0, 2, 1, 3, 4, 5]] for k, v in ref.items()}
    group = [["ids", "scores", "boxes"]]
    assert not judge_outputs(ref, swapped).ok  # element-wise: a large error
    report = judge_outputs(ref, swapped, row_groups=group)
    assert report.ok and {o.compared_as for o in report} == {"rows"}
    assert report["boxes"].figures().startswith("4 rows matched of 4 reference and 4 candidate rows")


def test_a_wrong_or_missing_detection_fails():
    boxes = _rng(10).uniform(0, 300, size=(3, 4)).astype(np.float32)
    ref = _detections([0.9, 0.8, 0.3], boxes)
    group = [["ids", "scores", "boxes"]]
    moved = {k: v.copy() for k, v in ref.items()}
    moved["boxes"][0, 1, 2] += 5.0
    assert not judge_outputs(ref, moved, row_groups=group).ok
    dropped = {k: v.copy() for k, v in ref.items()}
    for v in dropped.values():
        v[0, 2] = -1  # the last detection suppressed
    report = judge_outputs(ref, dropped, row_groups=group)
    assert not report.ok and report["scores"].n_bad == 1 and "no match" in report["scores"].problem()


def test_which_of_the_rows_tied_at_the_cutoff_are_kept_is_not_defined():
    """YOLOv3 at random init: every score 0.25; the top 4 of 6 tied candidates may be any 4."""
    boxes = _rng(13).uniform(0, 300, size=(6, 4)).astype(np.float32)
    ref = _detections([0.25] * 4, boxes[:4], pad=0)
    other = _detections([0.25] * 4, boxes[[0, 1, 4, 5]], pad=0)
    report = judge_outputs(ref, other, row_groups=[["ids", "scores", "boxes"]])
    assert report.ok and "4 rows tied with the last kept score" in report["boxes"].figures()
    lower = _detections([0.25, 0.25, 0.25, 0.2], boxes[[0, 1, 2, 5]], pad=0)  # a lower score is no tie
    assert not judge_outputs(ref, lower, row_groups=[["ids", "scores", "boxes"]]).ok


def test_a_detection_dropped_where_the_reference_itself_is_unstable_passes():
    boxes = _rng(11).uniform(0, 300, size=(3, 4)).astype(np.float32)
    ref = _detections([0.9, 0.8, 0.5000001], boxes)
    threshold = 0.5

    def detector(inputs):  # keeps the third detection only when its score clears the threshold
        score = float(inputs["x"][0]) * 0.5000001
        return _detections([0.9, 0.8, score], boxes) if score > threshold else _detections([0.9, 0.8], boxes[:2], 3)

    x = {"x": np.array([1.0], np.float32)}
    cand = _detections([0.9, 0.8], boxes[:2], 3)
    report = judge_outputs(ref, cand, row_groups=[["ids", "scores", "boxes"]], rerun_reference=detector, inputs=x)
    assert report.ok and any("detection rows change" in n for n in report.notes)


def test_selection_groups_and_row_axes():
    nodes = [helper.make_node("NonMaxSuppression", ["b", "s"], ["sel"]),
             helper.make_node("Gather", ["b", "sel"], ["boxes"]),
             helper.make_node("Gather", ["s", "sel"], ["scores"]),
             helper.make_node("Relu", ["b"], ["plain"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 5, 4]),
                     helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("boxes", "scores", "plain")])
    model = helper.make_model(graph)
    assert selection_groups(model) == [["boxes", "scores"]]
    assert row_axis([(1, 100, 1), (1, 100, 4)]) == 1
    assert row_axis([(7, 4), (7,)]) == 0
    assert row_axis([(1, 100, 4)]) == 1
    assert row_axis([()]) is None
    assert isinstance(onnx.helper.printable_graph(graph), str)


# --- arbitration by the ONNX specification -----------------------------------------------------------
def _relu_chain() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Neg", ["r"], ["y"], name="neg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_specification_sides_with_whoever_computes_the_node_right():
    from common.verify.arbiter import arbitrate
    from common.verify.locator import locate

    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    right = {"x": x, "r": np.maximum(x, 0), "y": -np.maximum(x, 0)}
    wrong = {"x": x, "r": np.abs(x), "y": -np.abs(x)}  # a runtime computing Relu as Abs
    model = _relu_chain()
    # the reference runtime is wrong, the candidate right: the specification says so. Teacher
    # forcing: the candidate's Neg reads the reference's r, so only Relu has an own error.
    own = {"r": np.maximum(x, 0), "y": -wrong["r"]}
    result = locate(model, wrong, right, local=own)
    assert result.divergence is not None and result.divergence.key == "relu" and not result.also
    result.arbitration = arbitrate(model, [result.divergence.key], wrong, own)
    (verdict,) = result.arbitration
    assert verdict.candidate_right and "agrees with the converted module" in verdict.detail
    assert result.reference_deviates
    # the usual case: the candidate is wrong
    own = {"r": np.abs(x), "y": -right["r"]}
    result = locate(model, right, wrong, local=own)
    result.arbitration = arbitrate(model, [result.divergence.key], right, own)
    assert not result.arbitration[0].candidate_right and not result.reference_deviates
