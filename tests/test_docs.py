"""The README's op tables are generated from the registries and must not drift from them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_supported_ops_table_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_op_tables.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_readme_quickstart_has_exactly_two_commands_and_ci_runs_them():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -c constraints.txt -e ".[mxnet,test]"' in ci and "-c constraints.txt" in commands[0]
    assert "roundtrip demo" in commands[0] and "roundtrip demo" in ci
    assert commands[1] == "python -m pytest -q" and "python -m pytest -q" in ci
