"""The wheel is the product: a product repo installs ansor-build as a dependency and never sees this checkout.

The wheel is built from a copy of the checkout (the files git would clone: no stale build/ or egg-info) and installed,
not editable and without dependencies (TVM and the rest come from this interpreter's site-packages), into a fresh
venv. A product project outside the checkout then builds and checks a zoo model with SCons, its target extending a
preset by name. This interpreter's editable install registers a meta-path finder that the venv sees too (it would
fill in any module missing from the wheel from the checkout), so every Python process of the venv runs an audit hook
that logs each file or directory it opens under the checkout: the log must stay empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import one_line_error

pytestmark = pytest.mark.release

REPO = Path(__file__).resolve().parents[2]

# Installed into the venv's site-packages: imported by every Python process of the venv once its .pth files ran.
SITECUSTOMIZE = '''
import os, sys

def _ansor_checkout_hook(event, args, _root={root!r}, _log={log!r}, _events=("open", "os.listdir", "os.scandir")):
    if event not in _events or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
        if path == _root or path.startswith(_root + os.sep):
            with open(_log, "a") as log:
                log.write("%d %s %s\\n" % (os.getpid(), event, path))
    except Exception:
        pass

sys.addaudithook(_ansor_checkout_hook)
'''

SCONSTRUCT = '''
import json, sys
import ansor_build
from ansor_build.paths import presets_dir

env = Environment(tools=["default", "ansor"], toolpath=[ansor_build.scons_toolpath()], ANSOR_CHECK_REPEAT=2)
pkg = env.AnsorModel("build/host/mlp", "models/mlp.onnx", ANSOR_TARGET="targets/host.yaml")
env.AnsorCheck(pkg, "models/mlp.onnx")
modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())
           if name.split(".")[0] in ("ansor", "ansor_build")}
print("ANSOR_PATHS=" + json.dumps({"modules": modules, "toolpath": ansor_build.scons_toolpath(),
                                   "presets": str(presets_dir()), "python": sys.executable}))
'''


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _checkout_files() -> list[str]:
    """The checkout's files as a clone would have them: tracked ones that exist, and untracked ones git does not
    ignore."""
    out = _run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    return sorted(name for name in set(out.split("\0")) if name and (REPO / name).is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once for the module, as `pip wheel` builds it (declared backend, no build isolation)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "ansor-build"
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--check-build-dependencies", "-w", work / "dist", source])
    (built,) = (work / "dist").glob("ansor_build-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv that sees this interpreter's packages, with the wheel installed in it (not editable) and the
    audit hook that logs opens under the checkout to VENV/checkout-opens.log."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root])
    python = root / "bin" / "python"
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-index",
          "--ignore-installed", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(root=str(REPO), log=str(root / "checkout-opens.log")))
    return root


def _environ(venv: Path, project: Path) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               ANSOR_BUILD_CACHE_DIR=str(project / ".cache"))
    return env


@pytest.fixture(scope="module")
def product(venv, tmp_path_factory):
    """A product project outside the checkout, built and checked once by the venv's SCons run: (root, its output)."""
    root = tmp_path_factory.mktemp("product")
    python = venv / "bin" / "python"
    env = _environ(venv, root)
    (root / "targets").mkdir()
    (root / "targets" / "host.yaml").write_text("extends: x86_64-avx2\nname: host\ntvm: {num-cores: 2}\n")
    (root / "SConstruct").write_text(SCONSTRUCT)
    _run([python, "-m", "ansor_build.zoo", root / "models", "mlp"], cwd=root, env=env)
    proc = _run([python, "-m", "SCons", "-Q"], cwd=root, env=env)
    return root, proc.stdout + proc.stderr


def test_wheel_ships_presets_tool_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    files = _checkout_files()
    presets = [name for name in files if name.startswith("targets/") and name.endswith(".yaml")]
    assert "targets/x86_64-avx2.yaml" in presets
    shipped = {f"ansor_build/{name}": name for name in presets}
    shipped["ansor_build/site_tools/ansor/__init__.py"] = "site_scons/site_tools/ansor/__init__.py"
    # every module and C++ source of the package: pyproject.toml lists the packages by hand
    shipped.update({name: name for name in files
                    if name.startswith("ansor_build/") and name.endswith((".py", ".cc", ".h"))})
    assert sorted(set(shipped) - names) == []
    with zipfile.ZipFile(wheel) as archive:  # the checkout's bytes: one copy of each file
        assert [n for n, source in shipped.items() if archive.read(n) != (REPO / source).read_bytes()] == []


def test_product_builds_and_checks_with_the_installed_wheel(venv, product):
    root, output = product
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (line,) = [line for line in output.splitlines() if line.startswith("ANSOR_PATHS=")]
    paths = json.loads(line.split("=", 1)[1])
    assert paths["python"] == str(venv / "bin" / "python")
    assert paths["toolpath"] == str(site / "ansor_build" / "site_tools")
    assert paths["presets"] == str(site / "ansor_build" / "targets")
    modules = paths["modules"]
    assert modules["ansor"] == str(site / "ansor_build" / "site_tools" / "ansor" / "__init__.py")
    assert modules["ansor_build"] == str(site / "ansor_build" / "__init__.py")
    assert [f for f in modules.values() if f and not f.startswith(str(site) + os.sep)] == []

    package = root / "build" / "host" / "mlp"
    manifest = package / "manifest.json"
    stamp = root / "build" / "host" / "mlp.check.txt"
    assert manifest.is_file() and stamp.is_file(), output
    assert "OK vs onnxruntime" in stamp.read_text()
    texts = {"scons output": output, "manifest": manifest.read_text(), "check stamp": stamp.read_text()}
    texts.update({p.name: p.read_text(errors="replace") for p in (root / "build" / "host").glob("*.log")})
    assert [name for name, text in texts.items() if str(REPO) in text] == []
    log = venv / "checkout-opens.log"
    assert not log.exists(), log.read_text()[:2000]


def test_check_without_onnxruntime_is_one_line(venv, product):
    root, _ = product
    blocked = "import sys; sys.modules['onnxruntime'] = None; from ansor_build.cli import main; sys.exit(main())"
    proc = subprocess.run([venv / "bin" / "python", "-c", blocked, "check", "build/host/mlp", "--model",
                           "models/mlp.onnx"], cwd=root, env=_environ(venv, root), capture_output=True, text=True)
    assert one_line_error(proc) == "ansor-build: error: check needs onnxruntime: pip install 'ansor-build[check]'"
    assert proc.returncode == 1


def test_explain_names_presets_alike_in_wheel_and_checkout(venv, product):
    root, _ = product
    args = ["-m", "ansor_build", "explain", "models/mlp.onnx", "--target", "targets/host.yaml"]
    installed = _run([venv / "bin" / "python", *args], cwd=root, env=_environ(venv, root)).stdout
    checkout = _run([sys.executable, *args], cwd=root).stdout
    assert "<ansor-build>/targets/x86_64-avx2.yaml" in installed
    preset_lines = [[line for line in text.splitlines() if "target file" in line] for text in (installed, checkout)]
    assert preset_lines[0] == preset_lines[1]  # same labels and digests: the two installs explain alike
