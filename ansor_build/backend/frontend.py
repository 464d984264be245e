"""ONNX -> Relax import, with unsupported operators named before TVM fails on them.

Whatever a model makes TVM's importer raise (ValueError, KeyError, TVMError, ...) becomes one InputError line that
names the node TVM was converting; `-v` logs TVM's traceback and output (a failure can also be a bug of TVM or of
ansor-build). The imported module must have static output shapes of at most `model.MAX_ELEMENTS` elements.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import logging
import math
import os
import re
import sys
import tempfile
import traceback

from ..errors import InputError
from ..model import MAX_ELEMENTS, Model
from . import import_tvm

log = logging.getLogger(__name__)

# Operators whose output shape depends on the values of their inputs: their outputs are never static.
DATA_DEPENDENT_OPS = frozenset({"Unique", "NonZero", "NonMaxSuppression", "Compress", "StringSplit", "Loop"})


def supported_ops() -> set[str]:
    """Operator types TVM's Relax ONNX importer converts."""
    import_tvm()
    from tvm.relax.frontend.onnx import onnx_frontend

    return set(onnx_frontend._get_convert_map()) | {"Constant", "If"}


def check_ops(model: Model) -> None:
    """Raise InputError naming the first node whose operator the importer does not support."""
    ops = supported_ops()
    for index, node in enumerate(model.proto.graph.node):
        if node.domain not in ("", "ai.onnx"):
            raise InputError(f"{model.path}: node '{node.name or index}' ({node.op_type}): operator domain "
                             f"'{node.domain}' is not supported (supported: the default ONNX domain)")
        if node.op_type not in ops:
            close = difflib.get_close_matches(node.op_type, sorted(ops), n=3)
            hint = f"; similar supported operators: {', '.join(close)}" if close else ""
            raise InputError(f"{model.path}: node '{node.name or index}': operator '{node.op_type}' is not supported "
                             f"by TVM's ONNX importer{hint}")


def import_onnx(model: Model):
    """Convert to a Relax IRModule with weights as constants and the model's static input shapes."""
    check_ops(model)
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {sig.name: list(sig.shape) for sig in model.inputs}
    dtypes = {sig.name: sig.dtype for sig in model.inputs}
    mod = failure = None
    with _captured_output() as printed:
        try:
            mod = from_onnx(model.proto, shape_dict=shapes, dtype_dict=dtypes)
        except Exception as err:  # noqa: BLE001 - TVM raises many types; the message is what helps
            failure = _import_failure(model, err), traceback.format_exc()
        if failure is not None:
            gc.collect()  # frees the failed importer (its traceback held it) while its C++ warnings are captured
    if failure is not None:
        log.debug("TVM's ONNX importer failed:\n%s%s", printed[0], failure[1])
        raise InputError(failure[0])
    if printed[0]:
        sys.stderr.write(printed[0])  # what TVM printed on success is not ours to hide
    check_outputs(model, mod)
    return mod


def check_outputs(model: Model, mod) -> None:
    """Raise InputError unless every output of `main`, and every tensor it computes, has a static shape of at most
    MAX_ELEMENTS elements (the package's signature and TVM's 32-bit indices need both)."""
    from tvm import relax

    main = mod["main"]
    names = [output.name for output in model.proto.graph.output]
    for index, ty in enumerate(_flatten(main.ret_ty, relax)):
        name = names[index] if index < len(names) else f"output_{index}"
        if not isinstance(ty, relax.TensorType):
            raise InputError(f"{model.path}: output '{name}' is imported as a {type(ty).__name__} (e.g. the result "
                             f"of Shape), not a tensor; ansor-build compiles models whose outputs are tensors")
        dims = _static_dims(ty)
        if dims is None:
            shown = "" if getattr(ty, "shape", None) is None else f" (shape {list(ty.shape.values)})"
            culprit = next((node for node in model.proto.graph.node if node.op_type in DATA_DEPENDENT_OPS), None)
            where = f"node '{culprit.name or list(model.proto.graph.node).index(culprit)}' ({culprit.op_type}): " \
                if culprit is not None else ""
            raise InputError(f"{model.path}: {where}the shape of output '{name}' depends on the input data{shown}; "
                             f"ansor-build compiles models whose outputs have static shapes")
    for binding in (b for block in getattr(main.body, "blocks", []) for b in block.bindings):
        for ty in _flatten(binding.var.ty, relax):
            dims = _static_dims(ty)
            if dims is not None and math.prod(dims) > MAX_ELEMENTS:
                raise InputError(f"{model.path}: the model computes a tensor of {math.prod(dims)} elements "
                                 f"({dims}); the limit is {MAX_ELEMENTS} per tensor (TVM indexes tensors with "
                                 f"32-bit integers)")


def _flatten(ty, relax) -> list:
    if isinstance(ty, relax.TupleType):
        return [item for field in ty.fields for item in _flatten(field, relax)]
    return [ty]


def _static_dims(ty) -> list[int] | None:
    """The dims of a tensor type when all are known integers, else None."""
    shape = getattr(ty, "shape", None)
    values = getattr(shape, "values", None)
    if values is None:
        return None
    dims = [getattr(value, "value", None) for value in values]
    return dims if all(isinstance(d, int) for d in dims) else None


def _import_failure(model: Model, err: Exception) -> str:
    """One line for an exception of TVM's importer: the node it was converting, TVM's message, where to see more."""
    node = _failing_node(err)
    where = ""
    if node is not None:
        nodes = list(model.proto.graph.node)
        label = node.name or (str(nodes.index(node)) if node in nodes else "?")
        where = f"node '{label}' ({node.op_type}): "
    return (f"{model.path}: {where}TVM's ONNX importer failed: {tvm_message(err)} "
            f"(a model TVM cannot import, or a bug: rerun as `ansor-build -v ...` for TVM's traceback)")


def _failing_node(err: Exception):
    """The ONNX node TVM's importer was converting when it raised (its innermost `node` local), or None."""
    import onnx

    found = None
    for frame, _line in traceback.walk_tb(err.__traceback__):
        if "onnx" in frame.f_code.co_filename:
            node = frame.f_locals.get("node")
            if isinstance(node, onnx.NodeProto):
                found = node
    return found


def tvm_message(err: Exception, limit: int = 300) -> str:
    """TVM's message on one line: printed IR (constants as `metadata[...]`, the 'Metadata omitted' notes) shortened;
    an exception without a message (a bare `assert` in TOPI) is shown with the line that raised it."""
    text = str(err)
    text = re.sub(r"#\s*Metadata omitted\.(\s*Use show_meta=True in script\(\) method to show it\.)?", " ", text)
    text = re.sub(r"metadata\[\"[^\"]*\"\]\[\d+\]", "a constant", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TVM errors may carry a C++ backtrace first; the message proper is the last "...Error: ..." line on.
    for index in range(len(lines) - 1, -1, -1):
        match = re.match(r"^(?:\w+\.)*\w*Error: (.*)", lines[index])
        if match:
            lines = [match.group(1), *lines[index + 1:]]
            break
    message = " ".join(" ".join(lines).split())
    if not message or isinstance(err, (KeyError, IndexError, AssertionError)):
        frames = traceback.extract_tb(err.__traceback__)
        source = frames[-1].line if frames and not message else ""
        message = f"{type(err).__name__}: {message or source or 'no message'}"
    return message if len(message) <= limit else message[:limit - 3] + "..."


def relax_op(err: Exception) -> str:
    """The Relax operator a pass was lowering when it raised (e.g. `nn_prelu`, from TVM's legalization function in
    the traceback, or a `call` local), or ''."""
    found = ""
    for frame, _line in traceback.walk_tb(err.__traceback__):
        name = getattr(getattr(frame.f_locals.get("call"), "op", None), "name", None)
        if isinstance(name, str):
            found = name
        elif "legalize_ops" in frame.f_code.co_filename.replace("\\", "/").split("/"):
            found = frame.f_code.co_name.lstrip("_")
    return found


@contextlib.contextmanager
def _captured_output():
    """Collect what is written to stdout and stderr, from Python and from TVM's C++ logging, while TVM imports
    (it prints the inputs of a node it fails on, and a BlockBuilder warning); yields a list that holds the text
    once the block ends."""
    printed: list[str] = []
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no stdout/stderr to redirect
        printed.append("")
        yield printed
        return
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield printed
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            printed.append(sink.read().decode(errors="replace"))
