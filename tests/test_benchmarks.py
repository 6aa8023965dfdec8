"""The conversion benchmark runs end to end (smoke mode: one model each, one run, no thresholds),
and its report writer keeps the sections other benchmarks own."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.report import Section, write_section
from tests.support.shared_models import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]


def test_conversion_benchmark_smoke_writes_both_sections(tmp_path: Path) -> None:
    assert (MODELS_DIR / "mxnet" / "mtcnn" / "det1-symbol.json").is_file(), f"MTCNN models not in {MODELS_DIR}"
    (tmp_path / "BENCHMARKS.json").write_text(json.dumps({"sections": {"forward": {
        "key": "forward", "title": "someone else's", "intro": "kept", "columns": [["model", "model"]],
        "rows": [{"model": "x"}], "notes": [], "meta": {}}}}))
    proc = subprocess.run([sys.executable, "benchmarks/bench_conversion.py", "--smoke", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads((tmp_path / "BENCHMARKS.json").read_text())["sections"]
    assert set(sections) == {"forward", "onnx2x_conversion", "x2onnx_cli"}
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    onnx2x, mxnet = rows
    assert onnx2x["model"] == "squeezenet" and not any(k.endswith("_error") for k in onnx2x)
    for mode in ("load", "convert", "cli", "cli-noverify"):
        assert onnx2x[f"{mode}_s"] > 0 and onnx2x[f"{mode}_copies"] > 0, mode
    assert mxnet["model"] == "det1" and "x2onnx_error" not in mxnet and "x2onnx-nv-ns_error" not in mxnet
    assert mxnet["stock_s"] > 0 and mxnet["x2onnx_s"] > 0 and mxnet["x2onnx-nv-ns_s"] > 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## someone else's" in text and "| squeezenet |" in text and "| det1 |" in text


def test_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    def section(key: str, value: float) -> Section:
        return Section(key=key, title=key, intro="", columns=[("v", "value")], rows=[{"v": value}])

    write_section(section("a", 1.0), tmp_path / "b.json", tmp_path / "b.md")
    write_section(section("b", 2.0), tmp_path / "b.json", tmp_path / "b.md")
    write_section(section("a", 3.0), tmp_path / "b.json", tmp_path / "b.md")
    data = json.loads((tmp_path / "b.json").read_text())["sections"]
    assert [data["a"]["rows"][0]["v"], data["b"]["rows"][0]["v"]] == [3.0, 2.0]
    text = (tmp_path / "b.md").read_text()
    assert text.index("## a") < text.index("## b") and "| 3 |" in text and "| 1 |" not in text


def test_forward_benchmarks_smoke_write_their_sections(tmp_path: Path) -> None:
    """The small-graph benchmark (BERT and a BiLSTM against their eager modules) and the light-model
    forward benchmark run end to end and write their sections; the converted outputs they check
    first agree with the eager modules / onnxruntime (no threshold on the timings)."""
    for script, extra in (("bench_small_graphs.py", ["--smoke"]),
                          ("bench_onnx2torch.py", ["--models", "squeezenet", "--threads", "1", "--repeat", "1"])):
        proc = subprocess.run([sys.executable, f"benchmarks/{script}", *extra, "--out-dir", str(tmp_path)],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads((tmp_path / "BENCHMARKS.json").read_text())["sections"]
    assert set(sections) == {"small_graphs", "forward_light"}
    rows = sections["small_graphs"]["rows"]
    assert [r["graph"] for r in rows] == ["bert", "lstm_bi"]
    for r in rows:
        assert r["eager_ms"] > 0 and r["onnx2x_ms"] > 0 and r["onnxruntime_ms"] > 0
        assert float(r["max_abs_diff"].split()[0]) <= 1e-4  # "diff (scale)" of outputs of scale ~1
    (light,) = sections["forward_light"]["rows"]
    assert light["model"] == "squeezenet" and light["ratio_b1"] > 0 and light["max_abs_diff_b1"] < 1e-3
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| bert |" in text and "| squeezenet |" in text


def test_timm_benchmark_smoke_writes_its_section(tmp_path: Path) -> None:
    """The timm benchmark builds, exports, converts and times one real-size model in a subprocess;
    the converted output it checks first agrees with onnxruntime (no threshold on the timings)."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_timm.py", "--smoke", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads((tmp_path / "BENCHMARKS.json").read_text())["sections"]["timm_models"]["rows"]
    assert row["model"] == "mobilenetv3_large_100" and "error" not in row, row
    assert row["eager_ms"] > 0 and row["onnx2x_ms"] > 0 and row["onnxruntime_ms"] > 0
    diff, scale = row["max_abs_diff"].split()
    assert float(diff) <= 1e-4 * float(scale.strip("()"))
    assert "| mobilenetv3_large_100 |" in (tmp_path / "BENCHMARKS.md").read_text()


def test_quantized_benchmark_smoke_writes_its_section(tmp_path: Path) -> None:
    """The quantized-graph benchmark runs end to end (a small dynamically quantized BERT and
    squeezenet through quantize_static) and the converted outputs it checks agree with onnxruntime."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_quantized.py", "--smoke", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "BENCHMARKS.json").read_text())["sections"]["quantized"]["rows"]
    assert [r["graph"] for r in rows] == ["bert_dynamic", "squeezenet_qop"]
    for r in rows:
        assert r["onnx2x_ms"] > 0 and r["onnxruntime_ms"] > 0
        diff, scale = (float(v.strip("()")) for v in r["max_abs_diff"].split())
        assert diff <= 1e-4 * max(1.0, scale)


def test_floor_benchmark_smoke_writes_its_sections(tmp_path: Path) -> None:
    """The floor benchmark times onnx.load, onnx-ir and the fx build of one light model, and the heavy
    kernels of one light model and one small graph replayed alone (no threshold on the timings)."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_floors.py", "--smoke", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads((tmp_path / "BENCHMARKS.json").read_text())["sections"]
    (conversion,) = sections["conversion_floor"]["rows"]
    assert conversion["model"] == "squeezenet" and conversion["onnx_nodes"] == 66
    assert 0 < conversion["load_ms"] < conversion["floor_ms"] and conversion["convert_ms"] > 0
    light, small = sections["kernel_floor"]["rows"]
    assert (light["graph"], small["graph"]) == ("squeezenet", "bert")
    assert light["heavy_calls"] == 26 + 3 and small["heavy_calls"] > 0  # 26 convolutions and 3 max pools
    for row in (light, small):
        assert row["calls"] > row["heavy_calls"]
        assert row["kernels_ms"] > 0 and row["calls_ms"] > 0 and row["onnx2x_ms"] > 0 and row["onnxruntime_ms"] > 0
