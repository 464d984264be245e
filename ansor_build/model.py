"""ONNX model files: loading with clear errors, input signatures, shape overrides and file dependencies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

# ONNX TensorProto element types that models may take as inputs, by numpy/TVM dtype name.
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


@dataclass(frozen=True)
class TensorSig:
    """Name, static shape and dtype of one model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Model:
    """A loaded ONNX model with resolved static input shapes."""

    path: Path
    proto: object  # onnx.ModelProto
    inputs: list[TensorSig]
    files: list[Path]  # the model file and its external-data files

    @property
    def name(self) -> str:
        return self.path.stem

    def sha256(self) -> str:
        """Hash of the model file and every external-data file (in order)."""
        return files_sha256(self.files)


def files_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def external_data_files(path: Path) -> list[Path]:
    """External-data files a model refers to, without loading tensors (cheap when there are none)."""
    path = Path(path)
    raw = path.read_bytes()
    if b"location" not in raw:  # fast path: external data entries always carry a "location" key
        return []
    import onnx

    try:
        proto = onnx.load_model_from_string(raw)
    except Exception:  # noqa: BLE001 - a corrupt model is reported by load_model, not by the scanner
        return []
    return _external_locations(proto, path)


def _external_locations(proto, path: Path) -> list[Path]:
    from onnx.external_data_helper import _get_all_tensors

    found: list[Path] = []
    for tensor in _get_all_tensors(proto):
        if tensor.data_location == 1:  # TensorProto.EXTERNAL
            for entry in tensor.external_data:
                if entry.key == "location":
                    location = path.parent / entry.value
                    if location not in found:
                        found.append(location)
    return found


def parse_shapes(text: str) -> dict[str, list[int]]:
    """Parse `name=1,3,224,224;other=1,16` (the CLI --shape / SCons ANSOR_SHAPES string form)."""
    shapes: dict[str, list[int]] = {}
    for item in filter(None, (part.strip() for part in text.replace(";", " ").split())):
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise InputError(f"shape '{item}': expected NAME=D0,D1,... with integer dims, e.g. input=1,3,224,224") \
                from None
    return shapes


def load_model(path: str | Path, shapes: dict[str, list[int]] | None = None) -> Model:
    """Load and check an ONNX model; resolve every input to a static shape (symbolic dims need `shapes`)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: unsupported model format '{path.suffix or path.name}' (supported: .onnx)")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises several types for garbage
        raise InputError(f"{path}: not a valid ONNX model ({type(err).__name__}: {_first_line(err)})") from None
    if not proto.graph.node:
        raise InputError(f"{path}: not a valid ONNX model (the graph has no nodes)")
    files = [path]
    for location in _external_locations(proto, path):
        if not location.is_file():
            raise InputError(f"{path}: external data file '{location.name}' not found (looked at {location})")
        files.append(location)
    if len(files) > 1:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(proto, str(path.parent))
    try:
        onnx.checker.check_model(proto)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: invalid ONNX model: {_first_line(err)}") from None
    inputs = _resolve_inputs(proto, path, dict(shapes or {}))
    return Model(path=path, proto=proto, inputs=inputs, files=files)


def _resolve_inputs(proto, path: Path, shapes: dict[str, list[int]]) -> list[TensorSig]:
    initializers = {init.name for init in proto.graph.initializer}
    graph_inputs = [value for value in proto.graph.input if value.name not in initializers]
    unknown = sorted(set(shapes) - {value.name for value in graph_inputs})
    if unknown:
        names = ", ".join(value.name for value in graph_inputs)
        raise InputError(f"{path}: shape given for unknown input '{unknown[0]}' (model inputs: {names})")
    result = []
    for value in graph_inputs:
        ttype = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(ttype.elem_type)
        if dtype is None:
            raise InputError(f"{path}: input '{value.name}': unsupported element type {ttype.elem_type} "
                             f"(supported: {', '.join(sorted(set(_ONNX_DTYPES.values())))})")
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in ttype.shape.dim]
        override = shapes.pop(value.name, None)
        if override is not None:
            if len(override) != len(dims):
                raise InputError(f"{path}: input '{value.name}': shape override {override} has {len(override)} dims, "
                                 f"the model's input has {len(dims)} ({_fmt(dims)})")
            for i, (given, dim) in enumerate(zip(override, dims)):
                if isinstance(dim, int) and dim != given:
                    raise InputError(f"{path}: input '{value.name}' dim {i}: the model fixes it to {dim}, "
                                     f"the override gives {given}")
            dims = override
        symbolic = [(i, d) for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
        if symbolic:
            i, d = symbolic[0]
            raise InputError(f"{path}: input '{value.name}' dim {i} is symbolic ('{d}') in {_fmt(dims)}; give a "
                             f"static shape, e.g. --shape {value.name}={','.join(str(x) if isinstance(x, int) and x > 0 else '1' for x in dims)}"
                             f" (SCons: ANSOR_SHAPES)")
        result.append(TensorSig(value.name, tuple(int(d) for d in dims), dtype))
    return result


def _fmt(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
