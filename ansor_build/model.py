"""ONNX model files: loading with clear errors, input signatures, shape overrides and file dependencies.

Models and shapes are treated as hostile: every problem found here is one `InputError` line naming the file, the
input or tensor, what was found and what is allowed. The limits (`MAX_ELEMENTS`, `MAX_RANK`, `MAX_MODEL_BYTES`)
are those of the tools below: TVM indexes tensors with 32-bit integers, protobuf parses messages under 2 GiB.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

# ONNX TensorProto element types that models may take as inputs, by numpy/TVM dtype name.
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
# Bytes per element of the TensorProto types whose external data is a plain array (sub-byte types left out).
_ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
                  17: 1, 18: 1, 19: 1, 20: 1}

MAX_ELEMENTS = 2**31 - 1  # per tensor, so every dim too: TVM's 32-bit indices overflow beyond (a batch of 1e8 did)
MAX_RANK = 32  # dims per tensor (numpy 1.x's limit)
MAX_MODEL_BYTES = 2**31 - 1  # protobuf cannot parse a larger model file; large weights go to external data
_LIMIT_WHY = "TVM indexes tensors with 32-bit integers"
_DIM_TEXT = re.compile(r"[+-]?[0-9]+")


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


def external_data_files(path: Path, *, present: bool = False) -> list[Path]:
    """External-data files a model refers to, without loading tensors (cheap when there are none).

    Raises InputError for a location outside the model's directory (absolute, `..`, or a symbolic link pointing
    out): nothing outside it is read or hashed. With `present`, also for a missing file and for an offset or
    length beyond the end of the file. A model file that is not ONNX gives [] (`load_model` reports it).
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size > MAX_MODEL_BYTES:
        return []
    raw = path.read_bytes()
    if b"location" not in raw:  # fast path: external data entries always carry a "location" key
        return []
    import onnx

    try:
        proto = onnx.load_model_from_string(raw)
    except Exception:  # noqa: BLE001 - a corrupt model is reported by load_model, not by the scanner
        return []
    return _external_data(proto, path, present)


def _external_data(proto, path: Path, present: bool) -> list[Path]:
    from onnx.external_data_helper import _get_all_tensors

    base = Path(os.path.realpath(path.parent))
    initializers = {init.name for init in proto.graph.initializer}
    found: list[Path] = []
    for tensor in _get_all_tensors(proto):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        what = f"{path}: {'initializer' if tensor.name in initializers else 'tensor'} '{_clip(tensor.name)}'"
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        file = _external_file(what, path, base, location)
        if present:
            _check_external_range(what, tensor, file, location, entries)
        if file not in found:
            found.append(file)
    return found


def _external_file(what: str, path: Path, base: Path, location: str) -> Path:
    """The file of an external-data `location`, which must lie in the model's directory (or below it)."""
    if not location or "\0" in location:
        raise InputError(f"{what}: external data location {_clip(location)!r} is not a file name")
    file = path.parent / location
    if os.path.isabs(location) or not Path(os.path.realpath(file)).is_relative_to(base):
        raise InputError(f"{what}: external data '{_clip(location)}' is outside the model's directory "
                         f"(allowed: files in {os.path.abspath(path.parent)} or below it)")
    return file


def _check_external_range(what: str, tensor, file: Path, location: str, entries: dict) -> None:
    shown = _clip(location)
    if not file.exists():
        raise InputError(f"{what}: external data file '{shown}' not found (looked at {file})")
    if not file.is_file():
        raise InputError(f"{what}: external data '{shown}' is not a regular file ({file})")
    if file.is_symlink():
        raise InputError(f"{what}: external data '{shown}' is a symbolic link (ONNX reads external data only from "
                         f"regular files: copy the file next to the model)")
    size = file.stat().st_size
    offset = _entry_int(what, entries, "offset", 0)
    length = _entry_int(what, entries, "length", None)
    if offset > size:
        raise InputError(f"{what}: external data offset {offset} is beyond the end of '{shown}' ({size} bytes)")
    if length is not None and offset + length > size:
        raise InputError(f"{what}: external data bytes {offset} to {offset + length} are beyond the end of "
                         f"'{shown}' ({size} bytes)")
    itemsize = _ELEMENT_BYTES.get(tensor.data_type)
    if itemsize is not None:
        need = math.prod(tensor.dims) * itemsize
        have = size - offset if length is None else length
        if have < need or (length is not None and length != need):
            raise InputError(f"{what}: external data '{shown}' holds {have} bytes at offset {offset}, its shape "
                             f"{_fmt(tensor.dims)} needs {need}")


def _entry_int(what: str, entries: dict, key: str, default):
    text = entries.get(key)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,20}", text.strip()):
        raise InputError(f"{what}: external data {key} {_clip(text)!r} is not a non-negative integer")
    return int(text)


def parse_shapes(text: str) -> dict[str, list[int]]:
    """Parse `name=1,3,224,224;other=1,16` (the CLI --shape / SCons ANSOR_SHAPES string form).

    Each input once; dims are integers from 1 to MAX_ELEMENTS, at most MAX_RANK of them, and at most MAX_ELEMENTS
    elements in all.
    """
    shapes: dict[str, list[int]] = {}
    given: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.replace(";", " ").split())):
        name, sep, dims = item.partition("=")
        values = dims.split(",")
        where = f"shape '{_clip(item)}'"
        bad = [(i, d) for i, d in enumerate(values) if not _DIM_TEXT.fullmatch(d)]
        if not sep or not name or bad:
            which = f"dim {bad[0][0]} '{_clip(bad[0][1], 24)}' is not an integer; " if sep and name else ""
            raise InputError(f"{where}: {which}expected NAME=D0,D1,... with integer dims, e.g. input=1,3,224,224")
        if name in shapes:
            raise InputError(f"{where}: the shape of '{_clip(name)}' is already given ('{_clip(given[name])}'); "
                             f"give each input once")
        if len(values) > MAX_RANK:
            raise InputError(f"{where}: {len(values)} dims; the limit is {MAX_RANK}")
        for i, dim in enumerate(values):
            if len(dim.lstrip("+-").lstrip("0")) > 19:  # int() refuses 4300 digits; any of these is out of range
                raise InputError(f"{where}: dim {i} is {_clip(dim, 24)}; dims must be from 1 to {MAX_ELEMENTS}")
        parsed = [int(d) for d in values]
        problem = _shape_problem(parsed)
        if problem:
            raise InputError(f"{where}: {problem}")
        shapes[name], given[name] = parsed, item
    return shapes


def _shape_problem(dims) -> str | None:
    """Why a static shape cannot be compiled (None when it can)."""
    if len(dims) > MAX_RANK:
        return f"{len(dims)} dims; the limit is {MAX_RANK}"
    for i, dim in enumerate(dims):
        if dim < 1:
            kind = "an empty tensor" if dim == 0 else "not a size"
            return f"dim {i} is {_clip(str(dim))} ({kind}); dims must be from 1 to {MAX_ELEMENTS}"
        if dim > MAX_ELEMENTS:
            return f"dim {i} is {_clip(str(dim))}; the limit is {MAX_ELEMENTS} ({_LIMIT_WHY})"
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        return f"{count} elements ({_fmt(dims)}); the limit is {MAX_ELEMENTS} per tensor ({_LIMIT_WHY})"
    return None


def load_model(path: str | Path, shapes: dict[str, list[int]] | None = None) -> Model:
    """Load and check an ONNX model; resolve every input to a static shape (symbolic dims need `shapes`)."""
    import onnx

    path = Path(path)
    _check_model_file(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises several types for garbage
        raise InputError(f"{path}: not a valid ONNX model ({type(err).__name__}: {_first_line(err)})") from None
    if not proto.graph.node:
        raise InputError(f"{path}: not a valid ONNX model (the graph has no nodes)")
    _check_types(proto, path)
    files = [path, *_external_data(proto, path, present=True)]
    if len(files) > 1:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(path.parent))
        except Exception as err:  # noqa: BLE001 - onnx's own checks of external data (ValueError, ValidationError)
            raise InputError(f"{path}: cannot load external data: {_first_line(err)}") from None
    try:
        onnx.checker.check_model(proto)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: invalid ONNX model: {_first_line(err)}") from None
    inputs = _resolve_inputs(proto, path, dict(shapes or {}))
    return Model(path=path, proto=proto, inputs=inputs, files=files)


def _check_types(proto, path: Path) -> None:
    """ONNX's type check of every node (check_model does not run it): an operator given a type its schema does not
    allow (e.g. Add of bools) would otherwise reach TVM's code generator and fail there. Runs before external data
    is loaded: types need no weights, and the proto stays small."""
    import onnx

    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=False)
    except onnx.shape_inference.InferenceError as err:
        text = _first_line(err)
        found = re.match(r"\[\w+\] \(op_type:([^,]*), node name: ([^)]*)\): (.*)", text)
        if found:
            op, name, what = found.groups()
            raise InputError(f"{path}: node '{_clip(name)}' ({op}): {what} (ONNX's type check)") from None
        raise InputError(f"{path}: invalid ONNX model: {text}") from None
    except Exception:  # noqa: BLE001 - inference itself failing (e.g. a model it cannot handle) is not a verdict
        return


def _check_model_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an ONNX model file")
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a model must be an .onnx file)")
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: unsupported model format '{path.suffix or path.name}' (supported: .onnx)")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: not a valid ONNX model (the file is empty)")
    if size > MAX_MODEL_BYTES:
        raise InputError(f"{path}: the model file is {size / 2**30:.1f} GiB; protobuf reads ONNX files up to 2 GiB "
                         f"(save large weights as external data: onnx.save_model(..., save_as_external_data=True))")


def _resolve_inputs(proto, path: Path, shapes: dict[str, list[int]]) -> list[TensorSig]:
    initializers = {init.name for init in proto.graph.initializer}
    graph_inputs = [value for value in proto.graph.input if value.name not in initializers]
    names = [value.name for value in graph_inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listed = ", ".join(_clip(n) for n in names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
        raise InputError(f"{path}: shape given for unknown input '{_clip(unknown[0])}' (model inputs: {listed}){hint}")
    return [_resolve_input(value, path, shapes.get(value.name)) for value in graph_inputs]


def _resolve_input(value, path: Path, override) -> TensorSig:
    where = f"{path}: input '{_clip(value.name)}'"
    ttype = value.type.tensor_type
    dtype = _ONNX_DTYPES.get(ttype.elem_type)
    if dtype is None:
        raise InputError(f"{where}: unsupported element type {ttype.elem_type} "
                         f"(supported: {', '.join(sorted(set(_ONNX_DTYPES.values())))})")
    if len(ttype.shape.dim) > MAX_RANK:
        raise InputError(f"{where}: the model gives it {len(ttype.shape.dim)} dims; the limit is {MAX_RANK}")
    # A dim is fixed by the model (dim_value >= 0) or free: a dim_param, nothing, or a negative dim_value (exporters
    # write -1 for dynamic dims, and onnxruntime treats it as symbolic).
    fixed = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in ttype.shape.dim]
    shown = [f if f is not None else d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
             for f, d in zip(fixed, ttype.shape.dim)]
    for i, dim in enumerate(fixed):
        if dim == 0:
            raise InputError(f"{where} dim {i}: the model fixes it to 0 (an empty tensor); ansor-build compiles "
                             f"inputs with dims from 1 to {MAX_ELEMENTS}")
        if dim is not None and dim > MAX_ELEMENTS:
            raise InputError(f"{where} dim {i}: the model fixes it to {dim}; the limit is {MAX_ELEMENTS} "
                             f"({_LIMIT_WHY})")
    dims = list(fixed)
    if override is not None:
        override = list(override)
        problem = _shape_problem(override)
        if problem:
            raise InputError(f"{where}: shape override {_clip(_fmt(override))}: {problem}")
        if len(override) != len(fixed):
            raise InputError(f"{where}: shape override {_fmt(override)} has {len(override)} dims, "
                             f"the model's input has {len(fixed)} ({_fmt(shown)})")
        for i, (given, dim) in enumerate(zip(override, fixed)):
            if dim is not None and dim != given:
                raise InputError(f"{where} dim {i}: the model fixes it to {dim}, the override gives {given}")
        dims = override
    free = [i for i, d in enumerate(dims) if d is None]
    if free:
        i = free[0]
        what = (f"symbolic ('{shown[i]}')" if isinstance(shown[i], str) and shown[i] != "?"
                else "unknown" if shown[i] == "?" else f"dynamic ({shown[i]})")
        example = ",".join(str(d) if d is not None else "1" for d in dims)
        raise InputError(f"{where} dim {i} is {what} in {_fmt(shown)}; give a static shape, e.g. "
                         f"--shape {_clip(value.name)}={example} (SCons: ANSOR_SHAPES)")
    problem = _shape_problem(dims)
    if problem:
        raise InputError(f"{where}: {problem}")
    return TensorSig(value.name, tuple(int(d) for d in dims), dtype)


def _fmt(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _clip(text: str, limit: int = 80) -> str:
    """Hostile names and values can be huge: messages show at most `limit` characters of each."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return _clip(text[0], 300) if text else type(err).__name__
