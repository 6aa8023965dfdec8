"""Build the GluonCV corpus, convert each model with the x2onnx CLI, and write docs/MODEL_ZOO.md.

Resumable: each model's result lands in WORKDIR/NAME/result.json and is reused on the next run
unless --force; a crash of one model loses only that model. Usage:

    python scripts/build_corpus.py [--workdir DIR] [--force] [NAME ...]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.gluon_corpus import BY_NAME, CORPUS, markdown, run_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to (re)build (default: every model of the corpus)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".corpus", help="where models and results go")
    parser.add_argument("--force", action="store_true", help="redo the named models even if a result exists")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "MODEL_ZOO.md", help="the table to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"not in the corpus: {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    results = run_corpus(args.workdir, args.names or [m.name for m in CORPUS], force=args.force)
    args.doc.write_text(markdown(results), encoding="utf-8")
    print(f"{sum(r.ok for r in results)} of {len(results)} pass; wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
