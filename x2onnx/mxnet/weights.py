"""Parameters as the exporter needs them, and a clear error when the params lack a weight.

Without this check a weight missing from ``.params`` silently becomes one more graph input
(MXNet cannot tell a weight from a data input), and the export fails later asking for its
shape. Here a missing argument whose role in its consumer is a parameter (``weight``, ``bias``,
``gamma``, ``moving_mean``, ...), or any missing auxiliary state, is reported by name.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

from common.errors import ModelLoadError

PARAMETER_ROLES = frozenset({
    "weight", "bias", "gamma", "beta", "moving_mean", "moving_var", "parameters", "running_mean", "running_var",
})


@functools.lru_cache(maxsize=None)
def _tensor_argument_names(op: str) -> tuple[str, ...]:
    """Names of an MXNet operator's tensor arguments, in order (() if unknown)."""
    from mxnet.operator import get_operator_arguments

    try:
        args = get_operator_arguments(op)
    except Exception:  # noqa: BLE001 - not an operator MXNet knows
        return ()
    return tuple(n for n, t in zip(args.names, args.types) if t.startswith("NDArray-or-Symbol"))


def argument_role(op: str, position: int) -> str:
    names = _tensor_argument_names(op)
    if position < len(names):
        return names[position]
    return names[-1] if names else "data"


def merged(arg_params: Mapping[str, Any], aux_params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(arg_params)
    out.update(aux_params)
    return out


def missing_parameters(nodes: list[dict], aux_names: set[str], params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(argument name, where it is used)]`` for weights the params do not hold."""
    uses: dict[int, list[tuple[dict, int]]] = {}
    for node in nodes:
        for position, entry in enumerate(node.get("inputs", [])):
            uses.setdefault(entry[0], []).append((node, position))
    missing = []
    for idx, node in enumerate(nodes):
        name = node["name"]
        if node["op"] != "null" or name in params:
            continue
        consumers = uses.get(idx, [])
        roles = [(c, argument_role(c["op"], pos)) for c, pos in consumers]
        if name in aux_names or (roles and all(role in PARAMETER_ROLES for _, role in roles)):
            consumer, role = roles[0] if roles else ({"op": "?", "name": "?"}, "state")
            missing.append((name, f"the {role} of {consumer['op']} '{consumer['name']}'"))
    return missing


def check_complete(nodes: list[dict], aux_names: set[str], params: Mapping[str, Any],
                   file: Optional[str]) -> None:
    missing = missing_parameters(nodes, aux_names, params)
    if missing:
        name, where = missing[0]
        more = f" (and {len(missing) - 1} more: {', '.join(n for n, _ in missing[1:4])})" if len(missing) > 1 else ""
        raise ModelLoadError(f"params have no '{name}', {where}{more}", file=file)
