"""Every gluon model-zoo vision network: export, onnx.checker, onnxruntime == MXNet (batch 1 and dynamic batch 4).

Seeded weights that imitate a trained network's conditioning (random BatchNorm gamma/beta,
statistics measured on a calibration batch, damped residual branches, logits of std ~2; see
tests/support/zoo_models.py), checked to keep float32's own error below a third of the tolerance.
Inputs are as small as each architecture allows (global pooling: 32x32; fixed final pooling:
224 or 299), which also shrinks VGG's and AlexNet's first dense layer: the whole zoo runs in a
few minutes in one process. Tolerance: the verification's own criterion at its float32 defaults
(``|d| <= 1e-5 + 1e-4 (|ref| + S)``, S the output's scale; common/verify/compare.py).
"""
from __future__ import annotations

import gc

import onnx
import pytest

from tests.support.zoo_models import (MODELS, float32_error, gluon_vision, input_shape, symbol_params,
                                      verification_inputs, zoo_network)

FLOAT32_NOISE_BOUND = 1e-4 / 3  # MXNet's own float32 error, relative to scale, far below rtol


def test_the_list_is_the_whole_zoo():
    """``get_model`` knows exactly these names (its table is local: probe with an unknown name)."""
    with pytest.raises(ValueError) as unknown:
        gluon_vision().get_model("no-such-model")
    listed = set(str(unknown.value).split("Available options are")[-1].split())
    assert len(MODELS) == 34 and listed == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_matches_mxnet(name):
    from x2onnx.mxnet.export import export_report

    shape = input_shape(name)
    sym, params = symbol_params(zoo_network(name, shape))
    # float32 itself must be far more accurate than the tolerance, or this would test rounding
    assert float32_error(sym, params, verification_inputs(shape)) < FLOAT32_NOISE_BOUND
    try:
        static = export_report(sym, params, {"data": shape})
        onnx.checker.check_model(static.model)
        assert static.report is not None and static.report.ok and not static.report.notes
        assert [tuple(i.type.tensor_type.shape.dim[k].dim_value for k in range(4)) for i in static.model.graph.input] \
            == [shape]
        del static
        dynamic = export_report(sym, params, {"data": shape}, dynamic_batch=True, verify_batch=4)
        onnx.checker.check_model(dynamic.model)
        assert dynamic.report is not None and dynamic.report.ok
        assert dynamic.report.comparison.outputs[0].ref_shape[0] == 4
        assert not dynamic.report.notes  # well-conditioned: judged without widening
        assert dynamic.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    finally:
        del sym, params
        gc.collect()
