"""Shape ops MXNet 1.9.1's exporter gets wrong.

Reshape: MXNet's special codes (0 copy, -1 infer, -2 copy the rest, -3 merge two, -4 split one,
``reverse``) were only handled for a handful of hard-coded patterns; here the target shape is
assembled from pieces of the input's runtime shape, so every combination works and the batch
dimension may stay dynamic. slice: negative steps (MXNet's empty begin/end then mean "from the
last" / "through the first" element). broadcast_to: a 0 in the shape keeps the input dimension. reverse: ``axis`` may be a tuple (GluonCV's
BBoxClipToImage writes ``axis=(1,)``; MXNet's translation parsed only a bare int).
SliceChannel: valid at opset 18 (Split's ``num_outputs``).
"""
from __future__ import annotations

from typing import Optional

from .ops_common import INT64_MAX, INT64_MIN, Emitter
from .translations import translation


class _ShapeAssembler:
    """Collects the pieces of a target shape: constants and slices of the input shape."""

    def __init__(self, e: Emitter, data: str) -> None:
        self.e = e
        self.data = data
        self._shape: Optional[str] = None
        self.pieces: list[str] = []

    @property
    def shape(self) -> str:
        if self._shape is None:
            self._shape = self.e.shape(self.data)
        return self._shape

    def dims(self, start: int, stop: Optional[int]) -> str:
        """input_shape[start:stop] (negative indices count from the end; stop None = to the end)."""
        end = INT64_MAX if stop is None else stop
        return self.e.slice(self.shape, [start], [end], [0])

    def dim(self, index: int) -> str:
        return self.dims(index, None if index == -1 else index + 1)

    def const(self, *values: int) -> str:
        return self.e.ints(values, "dims")


def _reshape_pieces(e: Emitter, asm: _ShapeAssembler, codes: list[int], reverse: bool) -> list[str]:
    """MXNet's InferReshapeShape, emitted as shape pieces (in output order)."""
    # With reverse, MXNet matches codes and input dims from the right; walking backwards with
    # negative input indices does the same.
    step = -1 if reverse else 1
    src = -1 if reverse else 0
    pieces: list[str] = []
    order = list(reversed(codes)) if reverse else list(codes)
    exhausted = False  # after -2 every input dim is used; only constants (and -1) may follow
    i = 0
    while i < len(order):
        code = order[i]
        if exhausted and code in (0, -2, -3, -4):
            raise e.fail(f"Reshape: code {code} after -2 has no input dimension left")
        if code == 0:
            pieces.append(asm.dim(src))
            src += step
        elif code == -1:
            pieces.append(asm.const(-1))
            src += step
        elif code == -2:
            if reverse:
                pieces.append(asm.dims(0, None if src == -1 else src + 1))
            else:
                pieces.append(asm.dims(src, None))
            exhausted = True
        elif code == -3:
            first, second = asm.dim(src), asm.dim(src + step)
            pieces.append(e.op("Mul", [first, second]))
            src += 2 * step
        elif code == -4:
            if i + 2 >= len(order):
                raise e.fail("Reshape: -4 needs two following values")
            d1, d2 = order[i + 1], order[i + 2]
            if reverse:  # the split pair was read backwards too
                d1, d2 = d2, d1
            whole = asm.dim(src)
            if d1 == -1 and d2 == -1:
                raise e.fail("Reshape: -4 with both parts -1")
            if d1 == -1:
                parts = [e.op("Div", [whole, asm.const(d2)]), asm.const(d2)]
            elif d2 == -1:
                parts = [asm.const(d1), e.op("Div", [whole, asm.const(d1)])]
            else:
                parts = [asm.const(d1), asm.const(d2)]
            pieces.extend(reversed(parts) if reverse else parts)
            src += step
            i += 3
            continue
        elif code > 0:
            pieces.append(asm.const(code))
            src += step
        else:
            raise e.fail(f"Reshape: unknown shape code {code}")
        i += 1
    return list(reversed(pieces)) if reverse else pieces


@translation("Reshape", since=12)
def convert_reshape(node, **kwargs):
    e = Emitter(node, kwargs)
    data = e.inputs[0]
    codes = [int(c) for c in e.attr_tuple("shape", ())]
    reverse = e.attr_bool("reverse", False)
    if not codes:
        target = [int(c) for c in e.attr_tuple("target_shape", ())]
        if not target:
            raise e.fail("Reshape needs shape")
        # deprecated form: 0 means "infer"; keep_highest keeps dimension 0 (ignoring target[0])
        codes = [-1 if c == 0 else c for c in target]
        if e.attr_bool("keep_highest", False):
            codes = [0] + codes[1:]
    if all(c > 0 or c == -1 for c in codes) and codes.count(-1) <= 1:
        e.op("Reshape", [data, e.ints(codes, "shape")], e.name)
        return e.done()
    asm = _ShapeAssembler(e, data)
    pieces = _reshape_pieces(e, asm, codes, reverse)
    target = pieces[0] if len(pieces) == 1 else e.op("Concat", pieces, axis=0)
    e.op("Reshape", [data, target], e.name)
    return e.done()


@translation("slice", since=12)
def convert_slice(node, **kwargs):
    """Slice over the leading axes; ``None`` begin/end follow the step's direction."""
    e = Emitter(node, kwargs)
    begin = list(e.attr_tuple("begin", ()))
    end = list(e.attr_tuple("end", ()))
    step = list(e.attr_tuple("step", ()))
    if len(begin) != len(end):
        raise e.fail(f"begin {tuple(begin)} and end {tuple(end)} differ in length")
    step = [1 if s is None else int(s) for s in step] + [1] * (len(begin) - len(step))
    starts, ends = [], []
    for b, t, s in zip(begin, end, step):
        if s == 0:
            raise e.fail("slice step 0")
        starts.append((0 if s > 0 else INT64_MAX) if b is None else int(b))
        ends.append((INT64_MAX if s > 0 else INT64_MIN) if t is None else int(t))
    e.slice(e.inputs[0], starts, ends, list(range(len(starts))), step[:len(starts)], out=e.name)
    return e.done()


@translation("reverse", since=12)
def convert_reverse(node, **kwargs):
    """Each axis read backwards: one Slice with step -1 (MXNet's translation padded the data to 8
    dimensions around a Gather, for a single int axis only)."""
    e = Emitter(node, kwargs)
    axes = [int(a) for a in e.attr_tuple("axis", ())]
    if not axes:
        raise e.fail("reverse needs axis")
    k = len(axes)
    e.slice(e.inputs[0], [-1] * k, [INT64_MIN] * k, axes, [-1] * k, out=e.name)
    return e.done()


@translation("broadcast_to", since=12)
def convert_broadcast_to(node, **kwargs):
    """Expand; MXNet's 0 ("keep this input dimension") is a 1 for ONNX's two-way broadcast."""
    e = Emitter(node, kwargs)
    shape = [int(d) for d in e.attr_tuple("shape", ())]
    target = [1 if d == 0 else d for d in shape]
    e.op("Expand", [e.inputs[0], e.ints(target, "shape")], e.name)
    return e.done()


@translation("SliceChannel", since=12)
def convert_slice_channel(node, **kwargs):
    """Equal parts along ``axis`` (squeezed with ``squeeze_axis``), named by index for the graph builder.

    From opset 18 Split needs ``num_outputs`` when no sizes are given; MXNet's translation omits it.
    """
    e = Emitter(node, kwargs)
    count = e.attr_int("num_outputs", None)
    if count is None or count < 1:
        raise e.fail("SliceChannel needs num_outputs >= 1")
    axis = e.attr_int("axis", 1)
    outs = e.output_names(count)
    squeeze = e.attr_bool("squeeze_axis", False)
    parts = [e.tmp("part") for _ in outs] if squeeze else outs
    e.op("Split", [e.inputs[0]], parts, axis=axis, num_outputs=count if e.opset >= 18 else None)
    if squeeze:
        for part, out in zip(parts, outs):
            e.squeeze(part, [axis], out)
    return e.done()
