"""The part of ``onnx2x/torch/runtime`` that a saved model calls, as plain top-level source.

A saved ``.py`` (:mod:`.artifact`) must run with torch alone, so the runtime helpers its forward
code calls travel with it. Copying whole runtime modules would put hundreds of lines a model
never uses in front of its reader; this module instead copies, for each helper called, its
``def`` and everything it needs from its own module (other functions, constants, imports),
found by following names through the module's top-level statements, in source order.

Runtime modules are self-contained (they import torch, the standard library and nothing of
their siblings), which is what makes this a closed computation. When two modules define one
name differently, the later module cannot be merged into the same namespace: :func:`extract`
reports it, and the caller embeds that module whole instead.
"""
from __future__ import annotations

import ast
import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Iterable, Optional


@dataclass
class _Statement:
    """One top-level statement of a runtime module."""

    node: ast.stmt
    binds: dict[str, str]  # name -> text of what it binds (to compare across modules)
    uses: set[str]


@dataclass
class RuntimeSource:
    """What :func:`extract` found: the merged source, and modules that could not be merged."""

    imports: list[str] = field(default_factory=list)  # import lines, deduplicated
    body: list[str] = field(default_factory=list)  # definitions, each a block of source
    bound: set[str] = field(default_factory=set)  # every name the blocks and imports define
    unmerged: list[str] = field(default_factory=list)  # modules to embed whole


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _import_lines(node: "ast.Import | ast.ImportFrom", wanted: set[str]) -> dict[str, str]:
    """name -> one import line binding it, for the aliases of ``node`` that are wanted."""
    lines = {}
    for alias in node.names:
        bound = alias.asname or alias.name.split(".")[0]
        if bound not in wanted:
            continue
        if isinstance(node, ast.Import):
            lines[bound] = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        else:
            lines[bound] = f"from {node.module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
    return lines


def _statements(tree: ast.Module, lines: list[str]) -> list[_Statement]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        binds: dict[str, str] = {}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                binds[bound] = ast.dump(alias) + str(getattr(node, "module", ""))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds[node.name] = _text(lines, node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            text = _text(lines, node)
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        binds[name.id] = text
        else:
            raise ValueError(f"unexpected top-level statement at line {node.lineno}")
        out.append(_Statement(node, binds, _names_used(node) - set(binds)))
    return out


def _text(lines: list[str], node: ast.stmt) -> str:
    """The statement's own lines (what two modules compare to tell whether they bind a name alike;
    not ``ast.get_source_segment``, which splits the whole module again on every call)."""
    return "\n".join(lines[node.lineno - 1:node.end_lineno])


def _block(lines: list[str], node: ast.stmt) -> str:
    """The statement's source with its decorators and the comment lines right above it."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while first > 0 and lines[first - 1].lstrip().startswith("#"):
        first -= 1
    return "\n".join(lines[first:node.end_lineno])


@functools.lru_cache(maxsize=None)
def _parsed(module_name: str) -> tuple[list[str], list[_Statement]]:
    """A runtime module's source lines and top-level statements (read once per process); raises
    ValueError for a statement :func:`extract` cannot follow."""
    source = inspect.getsource(importlib.import_module(module_name))
    lines = source.splitlines()
    return lines, _statements(ast.parse(source), lines)


def _closure(statements: list[_Statement], roots: Iterable[str]) -> list[_Statement]:
    """The statements needed to define ``roots``, in source order."""
    by_name = {name: s for s in statements for name in s.binds}
    needed: list[_Statement] = []
    todo = list(roots)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        statement = by_name[name]
        if all(statement is not s for s in needed):
            needed.append(statement)
        todo.extend(statement.uses)
    order = {id(s): i for i, s in enumerate(statements)}
    return sorted(needed, key=lambda s: order[id(s)])


def extract(functions: dict[str, set[str]], reserved: set[str]) -> RuntimeSource:
    """Source for ``functions`` ({module name: top-level function names}) and what they need.

    ``reserved``: names the generated file defines otherwise (its own header, the forward
    code's globals); a module that would rebind one of them is reported in ``unmerged``.
    """
    out = RuntimeSource()
    defined: dict[str, str] = {}  # name -> what binds it, over the modules merged so far
    imports: dict[str, str] = {}
    for module_name in sorted(functions):
        try:
            lines, statements = _parsed(module_name)
        except ValueError:  # a statement this module cannot follow (an ``if`` at top level): embed it whole
            out.unmerged.append(module_name)
            continue
        needed = _closure(statements, functions[module_name])
        wanted_imports: dict[str, str] = {}
        blocks: list[str] = []
        clash: Optional[str] = None
        for statement in needed:
            if isinstance(statement.node, (ast.Import, ast.ImportFrom)):
                wanted_imports.update(_import_lines(statement.node, set(statement.binds) & _all_uses(needed)))
                continue
            for name, text in statement.binds.items():
                if name in reserved or (name in defined and defined[name] != text) or name in imports:
                    clash = name
            blocks.append(_block(lines, statement.node))
        for name, line in wanted_imports.items():
            same_module = line == f"import {name}"  # ``import math`` means the same wherever it is
            if (name in defined or (name in reserved and not same_module) or imports.get(name, line) != line):
                clash = name
        if clash is not None:
            out.unmerged.append(module_name)
            continue
        for statement in needed:
            if not isinstance(statement.node, (ast.Import, ast.ImportFrom)):
                defined.update(statement.binds)
        imports.update(wanted_imports)
        out.body.extend(b for b in blocks if b not in out.body)
    out.imports = sorted(set(line for name, line in imports.items() if name != "torch"))
    out.bound = set(defined) | set(imports)
    return out


def _all_uses(statements: list[_Statement]) -> set[str]:
    return set().union(*(s.uses for s in statements)) if statements else set()


__all__ = ["RuntimeSource", "extract"]
