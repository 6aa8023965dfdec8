"""How low issue 12's speed targets can go on the libraries the converter is built on.

The other benchmarks measure the converter against ``onnx.load`` and onnxruntime; this one
measures what no converter built on onnx-ir, torch.fx and PyTorch's CPU kernels can avoid, so
that a target below it is seen to be out of reach rather than merely unmet.

**Conversion floor** (the ``light`` model-zoo graphs, seeded weights of the real size): three
steps every conversion into a ``torch.fx.GraphModule`` through onnx-ir must take, timed alone:

* ``onnx.load`` of the file (parsing the graph and reading the weights);
* ``onnx_ir.from_proto`` of the graph without its weights (the product's IR);
* building the converted module's own fx graph node by node and generating its code
  (``torch.fx.Graph.graph_copy`` + ``GraphModule``: the result, with none of the work of
  finding it).

``floor`` is their sum; the target is ``convert()`` <= 1.5x ``onnx.load``. Every figure is the
best of ``--repeat`` calls in this one process (warm caches: lower than the fresh-process
figures of ``bench_conversion.py``, for the reference and the conversion alike).

**Kernel floor** (the light graphs at batch 1 and the small exported graphs of
``bench_small_graphs.py`` at batch 1 and 16 tokens, one thread): the module's heavy kernels alone:
each convolution, matrix product, attention, pooling and recurrent layer of the converted module is
called again on the very inputs it received in a real forward, back to back, with nothing else
in between (no element-wise op, no reshape, no graph code); and every call of the forward replayed
the same way (what is left without the generated code around the calls); against onnxruntime's
whole forward.
Targets: light models <= 1.2x onnxruntime each (<= 1.0 in geometric mean), small graphs <= 1.5x
in geometric mean.

Run from the repository root::

    python benchmarks/bench_floors.py                    # every light model and small graph
    python benchmarks/bench_floors.py --light squeezenet --small bert gru --repeat 20
    python benchmarks/bench_floors.py --smoke --out-dir /tmp/bench   # CI: one of each, tiny repeats

Writes the sections ``conversion_floor`` and ``kernel_floor`` of docs/BENCHMARKS.json and
regenerates docs/BENCHMARKS.md (``--out-dir`` elsewhere, ``--no-write`` prints only).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import Section, add_output_flags, geomean, machine, write_section_to  # noqa: E402

LIGHT = ("resnet50", "vgg19", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet",
         "bvlc_alexnet", "zfnet512")
SMOKE_LIGHT, SMOKE_SMALL = ("squeezenet",), ("bert",)
# Substrings of a call target's name that make it one of the heavy kernels: convolutions (the
# runtime's fused and dilated ones included), matrix products, attention, pooling; and the
# recurrent layers.
HEAVY_NAMES = ("conv", "linear", "matmul", "mm", "attention", "matrix_vector", "pool")
HEAVY_MODULES = ("onnx2x.torch.runtime.rnn",)


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` calls (after one untimed call), in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


# --- conversion ---------------------------------------------------------------------------------
def save_light(name: str, folder: Path) -> str:
    """The light graph ``name`` with its seeded weights, written once for both floors."""
    import onnx

    from tests.support.light_weights import load_light

    path = str(folder / f"{name}.onnx")
    onnx.save(load_light(name, dynamic_batch=True), path)
    return path


def conversion_row(name: str, path: str, repeat: int) -> dict[str, Any]:
    import onnx
    import onnx_ir
    import torch.fx as fx

    from common.model_io import load_onnx
    from onnx2x.torch import convert

    gm = convert(path)
    skeleton = load_onnx(path, lazy=True)  # the graph; the weights stay in the file

    def build_fx() -> fx.GraphModule:
        graph = fx.Graph()
        graph.graph_copy(gm.graph, {})
        return fx.GraphModule(gm, graph)

    ms = {"load": best_ms(lambda: onnx.load(path), repeat),
          "ir": best_ms(lambda: onnx_ir.from_proto(skeleton), repeat),
          "fx": best_ms(build_fx, repeat),
          "convert": best_ms(lambda: convert(path), repeat)}
    floor = ms["load"] + ms["ir"] + ms["fx"]
    return {"model": name, "onnx_nodes": len(skeleton.graph.node), "fx_nodes": len(gm.graph.nodes),
            **{f"{k}_ms": round(v, 2) for k, v in ms.items()}, "floor_ms": round(floor, 2),
            "floor_x": round(floor / ms["load"], 2), "convert_x": round(ms["convert"] / ms["load"], 2),
            "convert_vs_floor": round(ms["convert"] / floor, 2)}


def conversion_section(rows: list[dict[str, Any]], repeat: int) -> Section:
    out_of_reach = [r["model"] for r in rows if r["floor_x"] > 1.5]
    return Section(
        key="conversion_floor", title="onnx2x torch: the floor under conversion time",
        intro=("What every conversion into a torch.fx GraphModule through onnx-ir must do, timed alone: "
               "`onnx.load` of the file, `onnx_ir.from_proto` of its graph (weights left in the file), and "
               "building the converted module's fx graph node by node with its generated code (no conversion "
               "work). floor = their sum; (x) = against `onnx.load`. Target: `convert()` <= 1.5x `onnx.load`. "
               "Best of the calls in one warm process. `python benchmarks/bench_floors.py`."),
        columns=[("model", "model"), ("onnx_nodes", "ONNX nodes"), ("fx_nodes", "fx nodes"),
                 ("load_ms", "onnx.load ms"), ("ir_ms", "onnx-ir ms"), ("fx_ms", "fx build + codegen ms"),
                 ("floor_ms", "floor ms"), ("floor_x", "floor (x)"), ("convert_ms", "convert() ms"),
                 ("convert_x", "convert() (x)"), ("convert_vs_floor", "convert() / floor")],
        rows=rows,
        notes=[f"floor above the 1.5x target: {', '.join(out_of_reach) or 'none'}: there, the target asks for "
               "less than onnx-ir and torch.fx take to hold the graph, before any conversion work."],
        meta={"repeat": repeat, **machine()})


# --- kernels ------------------------------------------------------------------------------------
def is_heavy(node: Any) -> bool:
    """A convolution, matrix product, attention, pooling or recurrent layer (see HEAVY_NAMES)."""
    if node.op != "call_function":
        return False
    name = getattr(node.target, "__name__", "")
    module = getattr(node.target, "__module__", "") or ""
    return any(h in name for h in HEAVY_NAMES) or module.startswith(HEAVY_MODULES)


def recorded_calls(gm: Any, inputs: tuple) -> list[tuple[Callable, tuple, dict, bool]]:
    """Each call of ``gm``'s forward on ``inputs`` (functions, tensor methods, submodules) with the
    arguments it received, and whether it is heavy (:func:`is_heavy`)."""
    import torch.fx as fx

    calls: list[tuple[Callable, tuple, dict, bool]] = []

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            # (a convolution that accumulates into its residual grows it on every replay, as fast
            # as on the first: values do not change what a kernel costs)
            if n.op == "call_function":
                calls.append((n.target, *self.fetch_args_kwargs_from_env(n), is_heavy(n)))
            elif n.op == "call_method":
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                calls.append((getattr(args[0], n.target), args[1:], kwargs, False))
            elif n.op == "call_module":
                calls.append((self.fetch_attr(n.target), *self.fetch_args_kwargs_from_env(n), False))
            return super().run_node(n)

    Recorder(gm).run(*inputs)
    return calls


def kernel_row(graph: str, kind: str, module: Any, inputs: tuple, sess: Any, feeds: dict, repeat: int) -> dict[str, Any]:
    import torch

    from benchmarks.bench_onnx2torch import median_latency

    with torch.inference_mode():
        calls = recorded_calls(module, inputs)
        heavy = [c for c in calls if c[3]]

        def replay(selected: list) -> Callable[[], None]:
            def run() -> None:
                for target, args, kwargs, _ in selected:
                    target(*args, **kwargs)
            return run

        lat = median_latency({"onnxruntime": lambda: sess.run(None, feeds), "onnx2x": lambda: module(*inputs),
                              "kernels": replay(heavy), "calls": replay(calls)}, repeat)
    ort = lat["onnxruntime"]
    return {"graph": graph, "kind": kind, "heavy_calls": len(heavy), "calls": len(calls),
            **{f"{k}_ms": round(v * 1e3, 3) for k, v in lat.items()},
            "kernels_vs_ort": round(lat["kernels"] / ort, 3), "calls_vs_ort": round(lat["calls"] / ort, 3),
            "onnx2x_vs_ort": round(lat["onnx2x"] / ort, 3)}


def light_kernel_row(name: str, path: str, repeat: int) -> dict[str, Any]:
    import torch

    from benchmarks.bench_onnx2torch import onnxruntime_session
    from common.model_io import load_onnx
    from onnx2x.torch import convert
    from tests.support.light_weights import light_feed

    sess = onnxruntime_session(path, 1)
    x = light_feed(load_onnx(path, lazy=True), batch=1, seed=1)  # the graph is enough for the feed
    return kernel_row(name, "light model", convert(path).eval(), (torch.from_numpy(x),), sess,
                      {sess.get_inputs()[0].name: x}, repeat)


def small_kernel_row(name: str, folder: Path, repeat: int) -> dict[str, Any]:
    import torch

    from benchmarks.bench_onnx2torch import onnxruntime_session
    from benchmarks.bench_small_graphs import _export
    from onnx2x.torch import convert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, path, sample = _export(name, folder)
    sess = onnxruntime_session(str(path), 1)
    inputs = sample(1, torch.Generator().manual_seed(1))
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return kernel_row(name, "small graph", convert(str(path)).eval(), tuple(inputs), sess, feeds, repeat)


def kernel_section(rows: list[dict[str, Any]], repeat: int) -> Section:
    notes = []
    for kind, limit, target in (("light model", 1.2, "each <= 1.2x"), ("small graph", 1.5, "geometric mean <= 1.5x")):
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        over = [r["graph"] for r in mine if r["kernels_vs_ort"] > limit]
        notes.append(f"{kind}s (target {target}), geometric means against onnxruntime: heavy kernels alone "
                     f"{geomean([r['kernels_vs_ort'] for r in mine])}, every call alone "
                     f"{geomean([r['calls_vs_ort'] for r in mine])}, onnx2x {geomean([r['onnx2x_vs_ort'] for r in mine])}; "
                     f"heavy kernels alone above {limit}x: {', '.join(over) or 'none'}")
    return Section(
        key="kernel_floor", title="onnx2x torch: the floor under forward latency",
        intro=("The converted module's heavy kernels alone (each convolution, matrix product, attention, pooling "
               "and recurrent layer called again on the inputs it received in a real forward, back to back, nothing "
               "else), and every call of its forward alone (the same for all its calls: what remains without the "
               "generated code around them), against onnxruntime's whole forward and the module's; batch 1, one "
               "thread, median of calls interleaved. A ratio above the target in `heavy kernels alone` is out of "
               "reach for any module running those PyTorch kernels; in `every call alone`, for any module making "
               "those calls. `python benchmarks/bench_floors.py`."),
        columns=[("graph", "graph"), ("kind", "kind"), ("heavy_calls", "heavy calls"), ("calls", "calls"),
                 ("onnxruntime_ms", "onnxruntime ms"), ("kernels_ms", "heavy kernels alone ms"),
                 ("calls_ms", "every call alone ms"), ("onnx2x_ms", "onnx2x ms"),
                 ("kernels_vs_ort", "heavy kernels alone / onnxruntime"), ("calls_vs_ort", "every call alone / onnxruntime"),
                 ("onnx2x_vs_ort", "onnx2x / onnxruntime")],
        rows=rows, notes=notes, meta={"repeat": repeat, **machine()})


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks.bench_small_graphs import GRAPHS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Run from the repository root. See the module docstring for what is measured.")
    parser.add_argument("--light", nargs="*", default=list(LIGHT), choices=LIGHT, metavar="MODEL",
                        help=f"light models (default: all: {' '.join(LIGHT)})")
    parser.add_argument("--small", nargs="*", default=list(GRAPHS), choices=GRAPHS, metavar="GRAPH",
                        help="small exported graphs for the kernel floor (default: all of bench_small_graphs.py's)")
    parser.add_argument("--repeat", type=int, default=20, help="calls per figure (default 20)")
    parser.add_argument("--smoke", action="store_true", help="one light model and one small graph, 2 calls")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.light, args.small, args.repeat = list(SMOKE_LIGHT), list(SMOKE_SMALL), 2
    import torch

    torch.set_num_threads(1)
    conversion: list[dict[str, Any]] = []
    kernels: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        light = {name: save_light(name, folder) for name in args.light}
        for name, path in light.items():
            conversion.append(conversion_row(name, path, args.repeat))
            print(json.dumps(conversion[-1]), flush=True)
        for name, path in light.items():
            kernels.append(light_kernel_row(name, path, args.repeat))
            print(json.dumps(kernels[-1]), flush=True)
        for name in args.small:
            kernels.append(small_kernel_row(name, folder, args.repeat))
            print(json.dumps(kernels[-1]), flush=True)
    sections = [conversion_section(conversion, args.repeat), kernel_section(kernels, args.repeat)]
    for s in sections:
        for note in s.notes:
            print(note)
        if not args.no_write:
            write_section_to(s, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
