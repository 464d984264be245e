"""Fixtures of the release tier: a product repo with a committed tuning store, checked out at several paths.

The store comes from a real (tiny-budget) tuning run, the way a developer makes it: `ansor-build tune` in
incremental mode, which also writes each model's task list. Checkouts copy the repo without metadata (fresh
mtimes, like `git clone`), so nothing can depend on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansor_build import zoo
from helpers import run_cli
from release_project import MODELS, SCONSTRUCT, SHAPES, TARGET, checkout


@pytest.fixture(scope="session")
def release_repo(tmp_path_factory, zoo_dir) -> dict[str, Path]:
    """`template`: the repo with its committed store; `unrelated`: that store plus a model the repo does not build."""
    base = tmp_path_factory.mktemp("release")
    repo = base / "template"
    (repo / "models").mkdir(parents=True)
    (repo / "targets").mkdir()
    shutil.copyfile(zoo_dir / "mlp.onnx", repo / "models/mlp.onnx")
    zoo.write_model("mlp", repo / "models/mlp_dyn.onnx", dynamic_batch=True)
    (repo / "targets/release.yaml").write_text(TARGET)
    (repo / "SConstruct").write_text(SCONSTRUCT)
    env = {"ANSOR_BUILD_CACHE_DIR": str(base / "cache")}
    for name in MODELS:
        run_cli("tune", repo / f"models/{name}.onnx", "--target", repo / "targets/release.yaml", "--tuning-dir",
                repo / "tuning", "--records-out", base / f"{name}.records.json", *SHAPES[name], env=env, check=True)

    unrelated = base / "unrelated-store"
    shutil.copytree(repo / "tuning", unrelated)
    other = zoo.write_model("mlp", base / "other.onnx", variant=2)
    run_cli("tune", other, "--target", repo / "targets/release.yaml", "--tuning-dir", unrelated,
            "--records-out", base / "other.records.json", env=env, check=True)
    return {"template": repo, "unrelated": unrelated, "base": base}


@pytest.fixture(scope="session")
def built_a(release_repo, tmp_path_factory):
    """Checkout A built with a CacheDir (it compiles and fills the cache); the cache directory."""
    root = tmp_path_factory.mktemp("checkout-a")
    cache = tmp_path_factory.mktemp("scons-cache")
    a = checkout(release_repo["template"], root / "product")
    proc = a.scons("-j2", f"cache={cache}")
    return a, proc, cache
