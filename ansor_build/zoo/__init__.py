"""A deterministic model zoo: small ONNX models generated in-process (nothing is downloaded).

Every model has one float32 input ``input`` and one output ``output``, opset 17, and weights drawn from
``numpy.random.default_rng`` with a fixed per-model seed, so ``make_model(name).SerializeToString()`` is the same
bytes in every run and process.

``variant=N`` (N >= 1) re-seeds exactly one layer and changes its shape (``ModelSpec.variant_layer``; each model
module's docstring says how), leaving every other layer bit-identical: a model with one changed layer.
``dynamic_batch=True`` makes dim 0 of ``input`` and ``output`` the symbolic dim ``batch``.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import onnx

from ansor_build.errors import InputError

from . import convnet, mlp, mobilenet, resnet, transformer


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[..., onnx.ModelProto]  # build(*, variant=0, dynamic_batch=False) -> onnx.ModelProto
    variant_layer: str = ""  # the one layer that variant != 0 changes (its node/initializer name prefix)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mlp", "MLP 64-128-128-10 (Gemm + Relu)", mlp.build, mlp.VARIANT_LAYER),
        ModelSpec("convnet", "small convnet 1x3x56x56: 3x Conv+Relu, MaxPool, GAP, Gemm", convnet.build,
                  convnet.VARIANT_LAYER),
        ModelSpec("resnet", "ResNet-style 1x3x32x32: stem + 2 basic blocks (one stride 2 with projection)",
                  resnet.build, resnet.VARIANT_LAYER),
        ModelSpec("mobilenet", "MobileNet-style 1x3x32x32: depthwise-separable blocks, ReLU6, inverted residual",
                  mobilenet.build, mobilenet.VARIANT_LAYER),
        ModelSpec("transformer", "one transformer encoder block, 16 tokens x 64 dims, 4 heads, Erf GELU",
                  transformer.build, transformer.VARIANT_LAYER),
    )
}
NAMES = tuple(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name raises InputError naming the valid ones and the nearest."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), NAMES, n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown zoo model {name!r} (valid: {', '.join(NAMES)}){hint}") from None


def make_model(name: str, *, variant: int = 0, dynamic_batch: bool = False) -> onnx.ModelProto:
    """Build zoo model ``name`` (see the module docstring for ``variant`` and ``dynamic_batch``)."""
    spec = get_spec(name)
    if isinstance(variant, bool) or not isinstance(variant, int) or variant < 0:
        raise InputError(f"zoo model variant must be an integer >= 0, got {variant!r}")
    return spec.build(variant=variant, dynamic_batch=bool(dynamic_batch))


def model_bytes(name: str, **kw) -> bytes:
    """The serialized model: the same bytes for the same arguments, in every process."""
    return make_model(name, **kw).SerializeToString(deterministic=True)


def write_model(name: str, path: str | os.PathLike, **kw) -> pathlib.Path:
    """Write model ``name`` to ``path`` atomically (temp file in the same directory, then os.replace)."""
    data = model_bytes(name, **kw)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is ordinary data
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def sample_inputs(model: onnx.ModelProto, seed: int = 0,
                  shapes: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
    """Deterministic standard-normal float32 inputs for every graph input (initializers excluded).

    ``shapes`` maps an input name to its full shape, or a symbolic dim name (e.g. ``"batch"``) to its size;
    symbolic dims not given default to 1. Keys the model does not have are ignored (so one ``shapes`` can serve
    static and dynamic-batch models alike).
    """
    shapes = dict(shapes or {})
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    rng = np.random.default_rng(seed)
    out = {}
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            shape = tuple(int(s) for s in shapes[inp.name])
            static = [(d.dim_value if d.HasField("dim_value") else None) for d in dims]
            if len(shape) != len(static) or any(s is not None and s != n for s, n in zip(static, shape)):
                raise InputError(f"sample_inputs: shape {list(shape)} does not fit input {inp.name!r} {static}")
        else:
            shape = tuple(d.dim_value if d.HasField("dim_value") else int(shapes.get(d.dim_param, 1)) for d in dims)
        elem = inp.type.tensor_type.elem_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        out[inp.name] = rng.standard_normal(shape).astype(dtype)
    return out


__all__ = ["MODELS", "NAMES", "ModelSpec", "get_spec", "make_model", "model_bytes", "sample_inputs", "write_model"]
