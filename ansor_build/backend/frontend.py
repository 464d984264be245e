"""ONNX -> Relax import, with unsupported operators named before TVM fails on them."""

from __future__ import annotations

import difflib

from ..errors import InputError
from ..model import Model
from . import import_tvm


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
    try:
        return from_onnx(model.proto, shape_dict=shapes, dtype_dict=dtypes)
    except Exception as err:  # noqa: BLE001 - TVM raises many types; the message is what helps
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        raise InputError(f"{model.path}: TVM could not import the model: {lines[-1] if lines else type(err).__name__}") \
            from err
