"""Save a converted model as two plain files that load without this toolkit installed.

Format, for ``save(gm, "out/model.pt")``:

* ``out/model.pt`` -- the ``state_dict`` written by ``torch.save``. It holds tensors only, so
  ``torch.load(path, weights_only=True)`` reads it and nothing in it is executed or unpickled
  as code.
* ``out/model.py`` -- self-contained Python source: a ``Model(torch.nn.Module)`` class whose
  ``forward`` is the generated code, its parameters and buffers declared with their shapes and
  dtypes, one class per subgraph module (If/Loop/Scan bodies), the ``onnx2x/torch/runtime``
  helpers the code calls as ordinary top-level functions (with what they need from their
  modules, :mod:`.runtime_source`; nothing when the model needs none), and
  ``load(weights_path=None)``. ``forward`` uses parameters in place and calls helpers by their
  names. It imports only ``torch`` and the standard library.

Loading without onnx2x::

    import importlib.util
    spec = importlib.util.spec_from_file_location("model", "out/model.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    net = mod.load()          # reads out/model.pt with torch.load(weights_only=True)

or ``from model import load`` with ``out/`` on ``sys.path``. ``model.py`` is code: like any
Python file, run only ones you produced or have read.

Why source and not ``torch.save(gm)``/TorchScript: a pickled GraphModule needs this package's
runtime helpers importable and unpickling runs code; TorchScript cannot express every helper.
Plain source plus a tensors-only state_dict is readable, diffable and safe to load.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.fx as fx

from common.atomic import atomic_files
from common.errors import ConversionFailure, ModelLoadError

from . import runtime_source
from .naming import sanitize

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
RUNTIME_PACKAGE = __name__.rsplit(".", 1)[0] + ".runtime"
_INDENT = "    "
# Names the generated file defines itself; fx globals must not shadow them.
_RESERVED = {"torch", "math", "operator", "os", "types", "builtins", "Model", "load", "WEIGHTS_FILE",
             "_module_from_source"}


def artifact_paths(path: PathLike) -> tuple[Path, Path]:
    """(weights, source) for an output path: ``x.pt`` -> ``x.pt`` + ``x.py``; ``x.py`` -> ``x.pt`` + ``x.py``."""
    p = Path(path)
    if p.suffix == ".py":
        return p.with_suffix(".pt"), p
    if not p.suffix:
        p = p.with_suffix(".pt")
    return p, p.with_suffix(".py")


def warn_if_shadowing(source: Path) -> None:
    """Warn when ``source`` has the name of a module Python can import (``ast.py``, ``json.py``,
    ``torch.py``): with its folder on ``sys.path`` (``from ast import load``), every later
    ``import ast`` in the process, torch's own included, would get the model file instead."""
    name = source.stem
    if not name.isidentifier():
        return
    if name not in sys.stdlib_module_names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return
        origin = getattr(spec, "origin", None)
        if spec is None or (origin and Path(origin).resolve().parent == source.resolve().parent):
            return  # nothing of that name, or an earlier file in the same folder (this model's)
    log.warning("%s: %r is also the name of an importable Python module: with %s on sys.path, `import %s` "
                "anywhere would load this file instead; load it with onnx2x.torch.artifact.load or by path "
                "(importlib, see the file's docstring), or choose another output name",
                source, name, source.parent, name)


# --- collecting what the source must declare ---------------------------------------------------
@dataclass
class _ClassSpec:
    name: str
    lines: list[str] = field(default_factory=list)  # __init__ body
    forward: str = ""


@dataclass
class _Collected:
    classes: list[_ClassSpec] = field(default_factory=list)
    globals: dict[str, Any] = field(default_factory=dict)
    extra_state: dict[str, torch.Tensor] = field(default_factory=dict)  # plain tensor attributes
    module_lines: dict[str, None] = field(default_factory=dict)  # ordered set


def _tensor_decl(t: torch.Tensor) -> str:
    return f"torch.empty({tuple(int(d) for d in t.shape)!r}, dtype={t.dtype!r})"


def _leaf_module_expr(name: str, module: torch.nn.Module) -> str:
    """Constructor source for a stock ``torch.nn`` leaf module, checked by rebuilding it."""
    cls = type(module)
    text = repr(module)
    if cls.__module__.startswith("torch.nn.") and "\n" not in text and text.startswith(cls.__name__ + "("):
        expr = f"torch.nn.{text}"
        try:
            rebuilt = eval(expr, {"torch": torch})  # noqa: S307 - our own repr of a torch.nn module
        except Exception:
            rebuilt = None
        if isinstance(rebuilt, cls) and _same_layout(rebuilt.state_dict(), module.state_dict()):
            return expr
    raise ConversionFailure(f"submodule {name!r} ({cls.__module__}.{cls.__name__}) cannot be written as source")


def _same_layout(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)


def _collect(gm: fx.GraphModule, class_name: str, prefix: str, out: _Collected) -> None:
    spec = _ClassSpec(class_name)
    out.classes.append(spec)
    for name, p in gm._parameters.items():
        if p is not None:
            spec.lines.append(f"self.register_parameter({name!r}, torch.nn.Parameter({_tensor_decl(p)}, "
                              f"requires_grad={bool(p.requires_grad)!r}))")
    for name, b in gm._buffers.items():
        if b is not None:
            spec.lines.append(f"self.register_buffer({name!r}, {_tensor_decl(b)})")
    for name, child in gm._modules.items():
        if child is None:
            continue
        if isinstance(child, fx.GraphModule):
            sub_class = f"{class_name}_{sanitize(name)}"
            _collect(child, sub_class, f"{prefix}{name}.", out)
            spec.lines.append(f"self.{name} = {sub_class}()")
        else:
            spec.lines.append(f"self.{name} = {_leaf_module_expr(prefix + name, child)}")
    # get_attr targets that are plain tensors (not registered) become buffers of the saved model.
    for node in gm.graph.nodes:
        if node.op != "get_attr" or "." in node.target or node.target == "training":
            continue  # ``self.training`` (trainable conversion) is every module's own flag
        if node.target in gm._parameters or node.target in gm._buffers or node.target in gm._modules:
            continue
        value = getattr(gm, node.target, None)
        if not isinstance(value, torch.Tensor):
            raise ConversionFailure(f"attribute {prefix}{node.target!r} is a {type(value).__name__}, "
                                    "which a saved model cannot declare")
        spec.lines.append(f"self.register_buffer({node.target!r}, {_tensor_decl(value)})")
        out.extra_state[prefix + node.target] = value.detach()
    code = gm.graph.python_code(root_module="self")
    src = code.src.strip("\n")
    start = src.find("def forward(")
    # fx puts module-level statements before forward (``wrap("name")`` for leaf functions, so
    # that fx.symbolic_trace keeps runtime helpers as calls); they must stay at module level.
    for line in src[:start].splitlines():
        if line.strip():
            out.module_lines.setdefault(line.strip())
    spec.forward = src[start:].rstrip()
    used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.forward))
    for gname, obj in code.globals.items():
        if gname not in used:
            continue
        if gname in out.globals and out.globals[gname] is not obj and out.globals[gname] != obj:
            raise ConversionFailure(f"generated code uses the name {gname!r} for two different objects")
        out.globals[gname] = obj


# --- turning globals into source ------------------------------------------------------------------
def _resolve(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


_PUBLIC_MODULE = {"_operator": "operator", "posix": "os", "_functools": "functools"}


def _global_source(name: str, obj: Any, runtime: dict[str, str], imports: set[str]) -> str:
    """One assignment that binds ``name`` to ``obj`` in the generated file."""
    if name in _RESERVED:
        if isinstance(obj, types.ModuleType) and obj.__name__ == name:
            imports.add(name)
            return ""  # imported by the header
        raise ConversionFailure(f"generated code uses the reserved name {name!r}")
    if isinstance(obj, types.ModuleType):
        imports.add(obj.__name__)
        return f"{name} = {obj.__name__}" if obj.__name__ != name else ""
    if isinstance(obj, float):
        return f"{name} = float({repr(obj)!r})" if not math.isfinite(obj) else f"{name} = {obj!r}"
    if obj is type(None):
        return f"{name} = type(None)"
    if obj is torch.device:
        return f"{name} = torch.device"
    if isinstance(obj, (torch.dtype, torch.memory_format, torch.layout)):
        return f"{name} = {obj!r}"
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ConversionFailure(f"generated code refers to {obj!r} (as {name!r}), which cannot be written as source; "
                                "converters must call module-level functions")
    if module.startswith(RUNTIME_PACKAGE + "."):
        short = module[len(RUNTIME_PACKAGE) + 1:]
        if "." in short:
            raise ConversionFailure(f"runtime module {module} must be a direct child of {RUNTIME_PACKAGE}")
        runtime[short] = module
        return f"{name} = _rt_{short}.{qualname}"
    for candidate in (_PUBLIC_MODULE.get(module), module):
        if candidate is None:
            continue
        try:
            found = _resolve(candidate, qualname)
        except (ImportError, AttributeError):
            continue
        if found is obj or found == obj:
            if candidate.split(".")[0] in ("onnx2x", "common", "x2onnx", "roundtrip", "tests"):
                break
            if candidate == "builtins":
                return f"{name} = builtins.{qualname}"
            imports.add(candidate)
            return f"{name} = {candidate}.{qualname}"
    raise ConversionFailure(f"generated code calls {module}.{qualname}, which a saved model cannot import "
                            f"without onnx2x; move it into {RUNTIME_PACKAGE}")


def _runtime_source(module_name: str) -> str:
    mod = importlib.import_module(module_name)
    try:
        return inspect.getsource(mod)
    except (OSError, TypeError) as exc:
        raise ConversionFailure(f"cannot read the source of {module_name} ({exc})") from exc


def _string_literal(text: str) -> str:
    if "'''" not in text and not text.endswith("\\"):
        return "r'''" + text + "'''"
    return repr(text)


def _indent(text: str, levels: int = 1) -> str:
    pad = _INDENT * levels
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


_LOADER = '''
def _module_from_source(name, source):
    """Build one embedded runtime module (the source of onnx2x/torch/runtime/<name>.py)."""
    module = types.ModuleType(name)
    module.__file__ = __file__
    exec(compile(source, f"{__file__}:<runtime {name}>", "exec"), module.__dict__)
    return module
'''

_LOAD_FN = '''
def load(weights_path=None, map_location="cpu", mmap=False):
    """Build ``Model`` and read its weights (torch.load with weights_only=True: no code runs).

    ``weights_path`` defaults to WEIGHTS_FILE beside this file. ``mmap=True`` reads nothing now:
    every parameter and buffer is a view of the memory-mapped weights file (pages are read when
    first used, and the file must stay unchanged while the model lives).
    """
    if weights_path is None:
        weights_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS_FILE)
    state = torch.load(weights_path, map_location=map_location, weights_only=True, mmap=mmap)
    with torch.device("meta"):  # declare shapes without allocating, then take the loaded tensors
        model = Model()
    model.load_state_dict(state, assign=True)
    __READ_ATTRIBUTES__
    return model.eval()
'''
# What load() runs besides torch when the model has weights or submodules: a runtime helper that
# travels with the saved model (its own section of the file).
_ATTRIBUTES_MODULE = RUNTIME_PACKAGE + ".attributes"
_ATTRIBUTES_READER = "read_attributes_through_classes"
_READ_ATTRIBUTES = (
    "    # the forward's ``self.<weight>`` reads through this file's classes, not nn.Module.__getattr__\n"
    "    {reader}(model, {{type(m) for m in model.modules() if type(m).__module__ == __name__}})\n")


def generate_source(gm: fx.GraphModule, *, weights_file: str = "model.pt", source_label: str = "") -> tuple[str, dict[str, torch.Tensor]]:
    """The text of the ``.py`` file and the state_dict to save beside it."""
    collected = _Collected()
    _collect(gm, "Model", "", collected)
    helpers = {g: (o.__module__, o.__qualname__) for g, o in collected.globals.items() if _is_runtime_function(o)}
    runtime: dict[str, str] = {}
    imports: set[str] = {"os"}
    assignments = []
    for gname in sorted(set(collected.globals) - set(helpers)):
        line = _global_source(gname, collected.globals[gname], runtime, imports)
        if line:
            assignments.append(line)
            if line.split(" = ", 1)[1].startswith("builtins."):
                imports.add("builtins")
    plain_globals = {g for g in collected.globals if g not in helpers and not _is_module_named(collected.globals[g], g)}
    wanted: dict[str, set[str]] = {}
    for module, qualname in helpers.values():
        wanted.setdefault(module, set()).add(qualname)
    merged = runtime_source.extract(wanted, _RESERVED | plain_globals | imports)
    load_uses, reader = _attribute_reader(gm, merged, _RESERVED | plain_globals | imports | set(helpers)
                                          | {spec.name for spec in collected.classes}, runtime)
    words = set().union(*(_identifiers(spec.forward) for spec in collected.classes))
    renames: dict[str, str] = {}
    short_owner: dict[str, str] = {}
    for gname, (module, qualname) in sorted(helpers.items()):
        if module in merged.unmerged:
            short = module[len(RUNTIME_PACKAGE) + 1:]
            runtime[short] = module
            assignments.append(f"{gname} = _rt_{short}.{qualname}")
        elif qualname not in words and short_owner.setdefault(qualname, module) == module:
            renames[gname] = qualname  # the forward code calls the helper by its own name
        else:
            assignments.append(f"{gname} = {qualname}")
    for spec in collected.classes:
        spec.forward = _readable_forward(spec.forward, renames)
    wraps = [_wrap_line(line, renames) for line in collected.module_lines]
    parts = [
        f"# Generated by onnx2x from {source_label or 'an ONNX model'!s} with torch {torch.__version__}.",
        "# Regenerate rather than edit: `onnx2x torch MODEL.onnx -o OUT.pt`.",
        '"""PyTorch module converted from ONNX by onnx2x; needs only torch.',
        "",
        f"Weights: {weights_file} beside this file (a state_dict; torch.load(..., weights_only=True)).",
        "Use: ``net = load(); y = net(x)``.",
        '"""',
        "from __future__ import annotations",
        "",
    ]
    if runtime:
        imports.add("types")
    parts += _import_block({f"import {m}" for m in imports} | set(merged.imports) | set(load_uses.imports))
    parts += ["", f"WEIGHTS_FILE = {weights_file!r}", ""]
    if merged.body:
        parts.append("")
        parts.append("# --- helpers the forward code calls (their source: onnx2x/torch/runtime) ---")
        for block in merged.body:
            parts += ["", block, ""]
    if runtime:
        parts.append(_LOADER)
        for short in sorted(runtime):
            parts.append(f"# --- runtime helpers: {runtime[short].replace('.', '/')}.py ---")
            parts.append(f"_rt_{short} = _module_from_source({short!r}, {_string_literal(_runtime_source(runtime[short]))})")
            parts.append("")
    if assignments:
        parts.append("# --- names the forward code uses ---")
        parts += assignments
    if wraps:
        parts.append("# keep the helpers single calls when the model is traced again with torch.fx")
        parts += wraps
    parts.append("")
    meta = {
        "ONNX_INPUT_NAMES": list(getattr(gm, "onnx_input_names", [])),
        "ONNX_OUTPUT_NAMES": list(getattr(gm, "onnx_output_names", [])),
        "ONNX_PARAM_NAMES": dict(getattr(gm, "onnx_param_names", {})),
    }
    if getattr(gm, "onnx2x_trainable", False):  # converted with trainable=True (absent otherwise)
        meta["onnx2x_trainable"] = True
    for key, attr in (("ONNX_PARAM_PERMUTED", "onnx_param_permuted"), ("ONNX_PARAM_RESHAPED", "onnx_param_reshaped")):
        if getattr(gm, attr, None):  # initializer = param.permute(PERMUTED).reshape(RESHAPED)
            meta[key] = dict(getattr(gm, attr))
    for spec in reversed(collected.classes):  # children first, so readers meet them before use
        parts.append("")
        parts.append(f"class {spec.name}(torch.nn.Module):")
        if spec.name == "Model":
            for key, value in meta.items():
                parts.append(f"{_INDENT}{key} = {_literal(value)}")
            parts.append("")
        parts.append(f"{_INDENT}def __init__(self):")
        parts.append(f"{_INDENT * 2}super().__init__()")
        parts += [f"{_INDENT * 2}{line}" for line in spec.lines]
        parts.append("")
        parts.append(_indent(spec.forward))
        parts.append("")
        parts.append("")
    if load_uses.body:
        parts.append(f"# --- what load() uses besides torch (its source: {_ATTRIBUTES_MODULE.replace('.', '/')}.py) ---")
        for block in load_uses.body:
            parts += ["", block, ""]
        parts.append("")
    parts.append(_LOAD_FN.strip("\n").replace("    __READ_ATTRIBUTES__\n",
                                                _READ_ATTRIBUTES.format(reader=reader) if reader else ""))
    source = re.sub(r"\n{3,}", "\n\n\n", "\n".join(parts)).rstrip() + "\n"
    try:
        compile(source, weights_file[:-3] + ".py", "exec")
    except SyntaxError as exc:
        raise ConversionFailure(f"generated source does not compile ({exc})") from exc
    state = dict(gm.state_dict())
    state.update(collected.extra_state)
    return source, state


def _attribute_reader(gm: fx.GraphModule, merged: runtime_source.RuntimeSource, reserved: set[str],
                      runtime: dict[str, str]) -> tuple[runtime_source.RuntimeSource, Optional[str]]:
    """The source of :func:`runtime.attributes.read_attributes_through_classes`, which ``load()``
    runs, and the name ``load()`` calls it by (None: the model has no weight or submodule to read);
    embedded whole (``runtime``) if its names clash with the file's."""
    if not any(m._parameters or m._buffers or m._modules for m in gm.modules()):
        return runtime_source.RuntimeSource(), None
    found = runtime_source.extract({_ATTRIBUTES_MODULE: {_ATTRIBUTES_READER}}, reserved | merged.bound)
    if _ATTRIBUTES_MODULE not in found.unmerged:
        return found, _ATTRIBUTES_READER
    short = _ATTRIBUTES_MODULE[len(RUNTIME_PACKAGE) + 1:]
    runtime[short] = _ATTRIBUTES_MODULE
    return runtime_source.RuntimeSource(), f"_rt_{short}.{_ATTRIBUTES_READER}"


def _import_block(lines: set[str]) -> list[str]:
    """Import lines grouped as people write them: standard library, then torch; one ``from``
    line per module."""
    plain = {line for line in lines if line.startswith("import ")}
    names: dict[str, list[str]] = {}
    for line in sorted(lines - plain):
        module, name = line[len("from "):].split(" import ", 1)
        names.setdefault(module, []).append(name)
    merged = plain | {f"from {m} import {', '.join(sorted(set(n)))}" for m, n in names.items()}
    is_torch = lambda line: line.split()[1].split(".")[0] == "torch"  # noqa: E731
    stdlib = sorted((line for line in merged if not is_torch(line)), key=lambda l: (l.startswith("from"), l))
    torch_lines = sorted((line for line in merged if is_torch(line)), key=lambda l: (l.startswith("from"), l))
    torch_lines = ["import torch", "import torch.fx"] + [line for line in torch_lines if line not in
                                                         ("import torch", "import torch.fx")]
    return stdlib + [""] + torch_lines


def _literal(value: Any) -> str:
    """``repr(value)``, a long dict one entry per line."""
    text = repr(value)
    if not isinstance(value, dict) or len(text) <= 90:
        return text
    pad = _INDENT * 2
    return "{\n" + "".join(f"{pad}{k!r}: {v!r},\n" for k, v in value.items()) + _INDENT + "}"


def _is_runtime_function(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    qualname = getattr(obj, "__qualname__", "")
    return (module.startswith(RUNTIME_PACKAGE + ".") and "." not in module[len(RUNTIME_PACKAGE) + 1:]
            and inspect.isfunction(obj) and "." not in qualname and "<" not in qualname)


def _is_module_named(obj: Any, name: str) -> bool:
    return isinstance(obj, types.ModuleType) and obj.__name__ == name


_WORD = re.compile(r"[A-Za-z_]\w*")


def _identifiers(code: str) -> set[str]:
    """Every word of ``code`` (a superset of its names: words in strings count too, which only
    makes a helper keep its longer global name)."""
    return set(_WORD.findall(code))


# One token of a line of fx's code, as far as renaming goes: a string literal (with its prefix), a
# comment, a number (``1e-05``, ``0x1f``: letters that are not names), an attribute (``.name``), or a name.
_RENAME_TOKEN = re.compile(r"""(?P<keep>[A-Za-z]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")|#.*"""
                           r"""|\d[\w.]*(?:[eE][+-]\d+)?|\.\s*[A-Za-z_]\w*)|(?P<name>[A-Za-z_]\w*)""")


def _rename(line: str, names: dict[str, str]) -> str:
    """``line`` with every name found in ``names`` replaced (strings, comments and attributes untouched).

    Why a regular expression: the lines are fx's own code (one statement each, no multi-line
    strings), and Python's tokenizer, pure Python, took a third of writing a model's source."""
    if not any(word in names for word in _WORD.findall(line)):
        return line

    def swap(match: "re.Match[str]") -> str:
        name = match.group("name")
        return names.get(name, name) if name is not None else match.group(0)

    return _RENAME_TOKEN.sub(swap, line)


_ATTR_LINE = re.compile(r"^(\s+)([A-Za-z_]\w*) = (self(?:\.[A-Za-z_]\w*)+)$")
_RELEASE = re.compile(r";  ((?:[A-Za-z_]\w* = )+)None$")


def _readable_forward(forward: str, renames: dict[str, str]) -> str:
    """fx's forward with parameters used in place (``conv(x, self.conv1_weight, ...)``, not a
    local copy of each) and runtime helpers called by their own names."""
    aliases: dict[str, str] = {}
    lines = []
    for line in forward.splitlines():
        match = _ATTR_LINE.match(line)
        if match:
            aliases[match.group(2)] = match.group(3)
            continue
        release = _RELEASE.search(line)
        if release:
            line = line[:release.start()]
        line = _rename(line, {**renames, **aliases})
        if release:
            freed = [n for n in release.group(1).split(" = ") if n and n not in aliases]
            if freed:
                line += ";  " + " = ".join(freed) + " = None"
        lines.append(line)
    return "\n".join(lines)


_WRAP = re.compile(r'^torch\.fx\._symbolic_trace\.wrap\("(\w+)"\)$')


def _wrap_line(line: str, renames: dict[str, str]) -> str:
    match = _WRAP.match(line)
    if match is None:
        return line
    return f"torch.fx.wrap({renames.get(match.group(1), match.group(1))!r})"


def write(gm: fx.GraphModule, weights_path: PathLike, source_path: PathLike, *, source_label: str = "") -> None:
    """Write both files at the given paths (not atomically: see :func:`save`)."""
    source, state = generate_source(gm, weights_file=Path(weights_path).name, source_label=source_label)
    Path(source_path).write_text(source, encoding="utf-8")
    torch.save(state, str(weights_path))


def save(gm: fx.GraphModule, path: PathLike, *, source_label: str = "") -> tuple[Path, Path]:
    """Write ``NAME.pt`` and ``NAME.py`` for ``path``; both appear together or neither does."""
    weights, source = artifact_paths(path)
    warn_if_shadowing(source)
    with atomic_files([weights, source]) as (w_tmp, s_tmp):
        write(gm, w_tmp, s_tmp, source_label=source_label)
    return weights, source


def load(path: PathLike, *, weights_path: Optional[PathLike] = None, map_location: str = "cpu",
         mmap: bool = False) -> torch.nn.Module:
    """Import a saved ``NAME.py`` (runs it: only load files you trust) and return ``load()``'s module.

    ``mmap=True``: the weights are pages of the ``.pt`` file, read when first used.
    """
    weights, source = artifact_paths(path)
    if not source.is_file():
        raise ModelLoadError("no such file", file=str(source))
    mod_name = f"onnx2x_artifact_{sanitize(source.stem)}_{abs(hash(str(source.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, source)
    if spec is None or spec.loader is None:
        raise ModelLoadError("cannot import the model source", file=str(source))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadError(f"the model source fails to import ({type(exc).__name__}: {exc})", file=str(source)) from exc
    return module.load(str(weights_path or weights), map_location=map_location, mmap=mmap)


__all__ = ["artifact_paths", "generate_source", "load", "save", "warn_if_shadowing", "write"]
