"""ONNX conformance suites through onnx2x torch, held to a floor that only goes up.

Each suite (``node``, ``simple``, ``pytorch-converted``, ``pytorch-operator``, ``light``) runs
through ``tests/support/conformance.py`` against the expected outputs shipped with the cases
(onnxruntime for ``light``, within 1e-4), writes a pass/fail table per case to
``reports/conformance_<suite>.md`` (folder overridable with ``X2ONNX_REPORT_DIR``) and fails
when fewer cases pass than ``tests/conformance_floor.json`` says.

Raising a floor (floors only go up; never lower one to make a test pass):
  1. run ``X2ONNX_RAISE_FLOOR=1 pytest tests/test_onnx2x_conformance.py``: every suite whose
     count went up rewrites its own floor in ``tests/conformance_floor.json``;
  2. or read "N / M passed" at the top of ``reports/conformance_<suite>.md`` and edit the file;
  3. commit the new floor together with the converter change that earned it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.conformance import SUITES, run_suite, write_table

REPO = Path(__file__).resolve().parents[1]
FLOOR_FILE = Path(__file__).with_name("conformance_floor.json")
# Per-case limit: a hanging converter must not hold the suite up.
CASE_TIMEOUT_S = 120


def report_dir() -> Path:
    return Path(os.environ.get("X2ONNX_REPORT_DIR") or REPO / "reports")


def read_floors() -> dict[str, int]:
    data = json.loads(FLOOR_FILE.read_text())
    return {k: int(v) for k, v in data.items() if not k.startswith("_")}


def raise_floor(suite: str, passed: int) -> None:
    """Write ``passed`` as the new floor of ``suite`` when it is higher (never lower)."""
    data = json.loads(FLOOR_FILE.read_text())
    if passed > int(data.get(suite, 0)):
        data[suite] = passed
        FLOOR_FILE.write_text(json.dumps(data, indent=2) + "\n")


def test_floor_file_covers_every_suite() -> None:
    floors = read_floors()
    assert set(floors) == set(SUITES)
    assert all(v >= 0 for v in floors.values())


@pytest.mark.parametrize("suite", SUITES)
def test_conformance_suite(suite: str) -> None:
    results = run_suite(suite, timeout_s=CASE_TIMEOUT_S)
    assert results, f"no cases found for suite {suite}"
    table = report_dir() / f"conformance_{suite}.md"
    write_table(results, str(table))
    passed = sum(r.status == "pass" for r in results)
    floor = read_floors()[suite]
    if os.environ.get("X2ONNX_RAISE_FLOOR") == "1":
        raise_floor(suite, passed)
    failing = [f"{r.name} ({r.status}: {r.detail[:120]})" for r in results if r.status != "pass"]
    assert passed >= floor, (
        f"{suite}: {passed} / {len(results)} cases pass, below the floor of {floor} "
        f"(table: {table}); failing cases include: " + "; ".join(failing[:15])
    )
