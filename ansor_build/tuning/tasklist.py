"""Model task lists in the record store: the record files a model's tuning step reads, known without TVM.

A fresh checkout has no build outputs, and SCons must not import TVM to learn a model's subgraphs (tasks). So every
tuning step (any mode but off) writes the model's task keys next to the records, under a key of everything that
decides them (the model's bytes, the input shapes, the tool versions; the target is the directory):

    <tuning_dir>/<target dir>/models/<key16>.json    {"format", "model_sha256", "shapes", "versions", "tasks"}

The SCons tool then makes the tuning step depend on exactly that file and the record files of those tasks (their
content, not their mtimes), so a fresh checkout of a committed store hits the CacheDir and records of other models
change nothing. The content is deterministic: committed with the store, it does not churn.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .store import dumps, write_atomic

log = logging.getLogger(__name__)

FORMAT = 1
MODELS_DIR = "models"
THREADS_DIR = "threads"  # beside models/: a model's runtime thread count (tuning/threads.py)


def _identity(model_sha256: str, shapes: dict | None) -> dict:
    from ..buildkey import tool_versions

    normalized = {str(name): [int(d) for d in dims] for name, dims in (shapes or {}).items()}
    return {"model_sha256": model_sha256, "shapes": normalized, "versions": tool_versions()}


def list_path(target_dir: Path, model_sha256: str, shapes: dict | None) -> Path:
    """Where the task list of this model (bytes, shapes, tool versions) lives in a target directory."""
    key = hashlib.sha256(dumps(_identity(model_sha256, shapes)).encode()).hexdigest()[:16]
    return Path(target_dir) / MODELS_DIR / f"{key}.json"


def list_text(model_sha256: str, shapes: dict | None, tasks) -> str:
    doc = dict(_identity(model_sha256, shapes), format=FORMAT, tasks=sorted(set(tasks)))
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def read_tasks(path: Path) -> list[str] | None:
    """The task keys of a task list file; None when it is missing or unreadable (callers fall back)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return [str(key) for key in doc["tasks"]] if doc.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def write_task_list(target_dir: Path, model_sha256: str, shapes: dict | None, tasks) -> Path | None:
    """Record a model's task keys in an existing target directory (unchanged files are not rewritten).

    Returns the path, or None when there is no target directory yet or it is not writable (that only makes the
    tuning step's signature coarser: every record file of the target).
    """
    if not Path(target_dir).is_dir():
        return None
    path = list_path(target_dir, model_sha256, shapes)
    text = list_text(model_sha256, shapes, tasks)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, text)
    except OSError as err:
        log.debug("%s: task list not written (%s)", path, err)
        return None
    return path


def model_task_files(target_dir: Path, model_files: list[Path], shapes: dict | None) -> list[Path]:
    """The store files a model's tuning step reads: its task list, the record files of its tasks that exist and
    its runtime thread count (`threads/<key16>.json`, tuning/threads.py), if one was measured.

    Without a task list (never tuned with this ansor-build, or another model version), every record file of the
    target: coarser, never stale. [] when the target directory does not exist.
    """
    from ..model import files_sha256

    target_dir = Path(target_dir)
    if not target_dir.is_dir():
        return []
    path = list_path(target_dir, files_sha256(model_files), shapes)
    tasks = read_tasks(path)
    if tasks is None:
        return sorted(target_dir.glob("*.jsonl"))
    files = [target_dir / f"{key}.jsonl" for key in tasks] + [target_dir / THREADS_DIR / path.name]
    return [path, *(f for f in files if f.is_file())]

