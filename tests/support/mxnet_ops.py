"""Op-level check for MXNet -> ONNX translations: export one small MXNet graph with the patched
exporter, run it in onnxruntime and compare with MXNet's own forward on the same seeded input.

The export goes through one function, :func:`export_to_onnx` (the project's pipeline,
``x2onnx.mxnet.export``), so the exporter under test is chosen in one place.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Mapping, Optional, Sequence

import numpy as np

import mx2onnx_patches  # noqa: F401  (restores numpy aliases before MXNet is imported)
from mx2onnx_patches.mxnet_import import import_mxnet

mx = import_mxnet()

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

OPSET = 13


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

def export_to_onnx(sym, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
                   path: Optional[str] = None, opset: int = OPSET) -> onnx.ModelProto:
    """Export ``sym`` with ``params`` for ``inputs`` (name -> array) through the project's pipeline.

    Simplification and verification are off: the op-level test is the comparison itself.
    """
    from x2onnx.mxnet import export

    mx_params = {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()}
    model = export(sym, mx_params, {n: a.shape for n, a in inputs.items()}, opset=opset, simplify=False,
                   verify=False, input_dtypes={n: a.dtype for n, a in inputs.items()})
    if path is not None:
        onnx.save(model, path)
    return model


# ----------------------------------------------------------------------------------------------
# reference and comparison
# ----------------------------------------------------------------------------------------------

def random_params(sym, inputs: Mapping[str, np.ndarray], seed: int = 0,
                  given: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Seeded random values for every argument and auxiliary state that is not an input."""
    rng = np.random.default_rng(seed)
    given = dict(given or {})
    known = {k: np.shape(v) for k, v in given.items()}
    known.update({k: v.shape for k, v in inputs.items()})
    arg_shapes, _, aux_shapes = sym.infer_shape(**known)
    params: dict[str, np.ndarray] = {}
    for name, shape in list(zip(sym.list_arguments(), arg_shapes)) + list(
            zip(sym.list_auxiliary_states(), aux_shapes)):
        if name in inputs:
            continue
        if name in given:
            params[name] = np.asarray(given[name])
        elif name.endswith(("_var", "moving_var")):
            params[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            params[name] = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    return params


def mxnet_forward(sym, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    arg_names = set(sym.list_arguments())
    args = {k: mx.nd.array(v, dtype=v.dtype) for k, v in {**params, **inputs}.items() if k in arg_names}
    aux = {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items() if k not in arg_names}
    exe = sym.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
    return [o.asnumpy() for o in exe.forward(is_train=False)]


_SUBPROCESS_FORWARD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from mx2onnx_patches.mxnet_import import import_mxnet
mx = import_mxnet()
for case in range(int(sys.argv[3])):
    folder = f"{sys.argv[2]}/{case}"
    sym = mx.sym.load(f"{folder}/sym.json")
    arrays = dict(np.load(f"{folder}/in.npz"))
    args = {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items() if k in set(sym.list_arguments())}
    aux = {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items() if k not in set(sym.list_arguments())}
    exe = sym.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
    np.savez(f"{folder}/out.npz", *[o.asnumpy() for o in exe.forward(is_train=False)])
"""


def mxnet_forward_without_mkldnn(sym, params: Mapping[str, np.ndarray],
                                 inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """MXNet's forward in a fresh process with its MKL-DNN backend off.

    MXNet 1.9.1's MKL-DNN kernels reject some valid configurations (Deconvolution with
    ``target_shape``: "could not create a descriptor") or compute another function than the
    operator's definition (SoftmaxOutput on a 1-D or 4-D input); its reference kernels do not.
    """
    return mxnet_forwards_without_mkldnn([(sym, params, inputs)])[0]


def mxnet_forwards_without_mkldnn(cases: Sequence[tuple]) -> list[list[np.ndarray]]:
    """:func:`mxnet_forward_without_mkldnn` for several ``(sym, params, inputs)`` in one process."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        for k, (sym, params, inputs) in enumerate(cases):
            os.makedirs(os.path.join(tmp, str(k)))
            sym.save(os.path.join(tmp, str(k), "sym.json"))
            np.savez(os.path.join(tmp, str(k), "in.npz"), **{**params, **inputs})
        env = {**os.environ, "MXNET_MKLDNN_ENABLED": "0", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0"}
        subprocess.run([sys.executable, "-c", _SUBPROCESS_FORWARD, repo, tmp, str(len(cases))],
                       check=True, env=env, capture_output=True, timeout=600)
        results = []
        for k in range(len(cases)):
            with np.load(os.path.join(tmp, str(k), "out.npz")) as result:
                results.append([result[f"arr_{i}"] for i in range(len(result.files))])
        return results


def onnx_forward(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: inputs[n] for n in feed_names})


def _label_arguments(sym) -> set[str]:
    """Arguments used only as a loss head's label: bound for MXNet, never given to the exporter."""
    import json

    from common.mxnet_heads import label_inputs

    graph = json.loads(sym.tojson())
    return set(label_inputs(graph["nodes"], heads=graph["heads"]))


def check_export(sym, inputs: Mapping[str, np.ndarray], *, params: Mapping[str, np.ndarray] | None = None,
                 atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0,
                 mkldnn: bool = True, opset: int = OPSET) -> onnx.ModelProto:
    """Export ``sym``, run both sides and assert every output matches in shape and value.

    ``inputs`` maps graph-input names to arrays; their order must follow ``sym.list_inputs()``.
    ``params`` may fix some parameters; the rest are drawn at random. ``mkldnn=False`` computes
    the reference with MXNet's own kernels in a subprocess (for cases MKL-DNN refuses).
    """
    order = [n for n in sym.list_inputs() if n in inputs]
    inputs = {n: inputs[n] for n in order}
    all_params = random_params(sym, inputs, seed=seed, given=params)
    forward = mxnet_forward if mkldnn else mxnet_forward_without_mkldnn
    expected = forward(sym, all_params, inputs)
    export_params = {k: v for k, v in all_params.items() if k not in _label_arguments(sym)}
    model = export_to_onnx(sym, export_params, inputs, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    got = onnx_forward(model, inputs)
    assert len(got) == len(expected), f"{len(got)} ONNX outputs, MXNet has {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, f"output {i}: shape {g.shape} != MXNet {e.shape}"
        np.testing.assert_allclose(g, e, atol=atol, rtol=rtol, err_msg=f"output {i}")
    return model


def node_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def rand(*shape: int, seed: int = 1, low: float = -1.0, high: float = 1.0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


__all__: Sequence[str] = ["check_export", "export_to_onnx", "mxnet_forward", "onnx_forward", "random_params",
                          "node_types", "rand", "mx", "OPSET"]
