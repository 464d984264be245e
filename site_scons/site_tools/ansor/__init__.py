"""SCons tool `ansor`: `env.AnsorModel(...)` turns an ONNX model into a package directory.

Thin glue: it declares builders, outputs and dependencies; `ansor_build` does the work in a subprocess
(`python -m ansor_build build ...`), so TVM is never imported by SCons itself and `-j` builds run in parallel.

    env = Environment(tools=["default", "ansor"], toolpath=[ansor_build.scons_toolpath()])
    pkg = env.AnsorModel("build/x86_64/convnet", "models/convnet.onnx", ANSOR_TARGET="targets/x86_64.yaml")
    env.AnsorCheck(pkg, "models/convnet.onnx")   # fresh-process run compared with onnxruntime

Rebuild signature: the command line (model, target and shape arguments; the interpreter path is excluded), the
contents of the model and its external-data files, of the target YAML and every file it `extends`, of the runner
sources, and the ansor-build / apache-tvm / apache-tvm-ffi versions.

Tuning (ANSOR_TUNE=reuse|incremental|full) adds a step before the compile: `python -m ansor_build tune` writes
PACKAGE.records.json, the records the package applies, and the compile depends on that file's content only. So a
change of tuning mode or budget re-runs the (cheap, when nothing is left to tune) tuning step but recompiles only
if the applied records change. The tuning step's signature adds the mode, the budgets, and the size/mtime of the
record files of the model's tasks (listed in the previous PACKAGE.records.json): new records for those tasks
re-run it, records of other models do not.
"""

import os
import sys

import SCons.Action
import SCons.Builder
import SCons.Errors
import SCons.Scanner

# Environment variables the ansor-build subprocess sees besides SCons's own minimal ENV (PATH is needed for
# cross compilers installed outside /usr/bin; TVM_* and ANSOR_BUILD_* are the knobs documented in the README).
_PASS_ENV_PREFIXES = ("TVM_", "ANSOR_BUILD_", "CUDA_")
_PASS_ENV = ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "TMPDIR")


def _ansor():
    # Deferred: the SConstruct may extend sys.path before the tool's builders are used.
    import ansor_build.model
    import ansor_build.package.layout
    import ansor_build.target
    import ansor_build.tuning
    import ansor_build.tuning.driver

    import ansor_build.version
    import ansor_build.runner

    return ansor_build


def _user_error(err):
    return SCons.Errors.UserError(str(err))


def _versions():
    """`ansor-build=X apache-tvm=Y apache-tvm-ffi=Z`, read from package metadata (TVM is not imported)."""
    from ansor_build.backend import versions

    parts = {"ansor-build": _ansor().version.__version__, **versions()}
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()))


def _process_env(env):
    process_env = dict(env["ENV"])
    for name, value in os.environ.items():
        if name in _PASS_ENV or name.startswith(_PASS_ENV_PREFIXES):
            process_env.setdefault(name, value)
    return process_env


def _shape_flags(shapes):
    if not shapes:
        return ""
    if isinstance(shapes, str):
        shapes = _ansor().model.parse_shapes(shapes)
    return " ".join(f"--shape {name}={','.join(str(d) for d in dims)}" for name, dims in sorted(shapes.items()))


def ansor_model(env, target, source, **overrides):
    """Declare the package directory `target` built from the ONNX model `source` for `ANSOR_TARGET`.

    Returns the package's file nodes (manifest.json first).
    """
    ansor = _ansor()
    env = env.Override(overrides) if overrides else env
    target_yaml = env.subst("$ANSOR_TARGET")
    if not target_yaml:
        raise SCons.Errors.UserError(f"AnsorModel('{target}'): set ANSOR_TARGET to a target YAML file")
    model = env.arg2nodes(source, env.File)[0] if not isinstance(source, (list, tuple)) else \
        env.arg2nodes(source[0], env.File)[0]
    try:
        spec = ansor.target.load_target(env.File(target_yaml).srcnode().abspath)
        files = ansor.package.layout.package_files(spec)
        shape_flags = _shape_flags(env.get("ANSOR_SHAPES"))
    except ansor.AnsorError as err:
        raise _user_error(err) from None
    out = env.Dir(target)
    targets = [out.File(name) for name in files]
    # Source order matters to $ANSOR_COM: the model first, the target YAML second.
    sources = [model, env.File(target_yaml), *[env.File(str(f)) for f in spec.files[1:]],
               *[env.File(str(f)) for f in ansor.runner.runner_sources()],
               env.Value(env.subst("$ANSOR_VERSIONS"))]
    records = _tuning_step(env, ansor, spec, out, sources, shape_flags)
    if records is not None:
        sources.append(records)
    nodes = env._AnsorPackage(targets, sources, ANSOR_SHAPE_FLAGS=shape_flags, ENV=_process_env(env),
                              ANSOR_RECORDS_FLAGS=f"--records {records.path}" if records is not None else "")
    env.Clean(nodes, [out, out.File(f"../{out.name}.link.log")])
    return nodes


def _scan_external_data(node, env, path):
    """Implicit dependencies of an ONNX model: its external-data files (works for generated models too)."""
    if not str(node).endswith(".onnx") or not node.exists():
        return []
    files = _ansor().model.external_data_files(node.srcnode().abspath if node.srcnode().exists() else node.abspath)
    return [node.dir.File(str(f.relative_to(node.srcnode().dir.abspath))) for f in files]


def _tuning_flags(env) -> str:
    flags = []
    for var, flag in (("ANSOR_TRIALS", "--trials"), ("ANSOR_TRIALS_PER_TASK", "--trials-per-task"),
                      ("ANSOR_TIME_BUDGET", "--time-budget")):
        value = env.get(var)
        if value not in (None, ""):
            flags.append(f"{flag} {value}")
    return " ".join(flags)


def _tuning_step(env, ansor, spec, out, sources, shape_flags):
    """The records file node that the package's compile depends on (None when tuning is off)."""
    mode = env.subst("$ANSOR_TUNE") or "off"
    if mode not in ansor.tuning.MODES:
        raise SCons.Errors.UserError(f"ANSOR_TUNE: '{mode}' is not allowed (expected one of: "
                                     f"{', '.join(ansor.tuning.MODES)})")
    if mode == "off":
        return None
    tuning_dir = env.Dir(env.subst("$ANSOR_TUNING_DIR"))
    records = out.File(f"../{out.name}.records.json")
    store = ansor.tuning.TuningStore(tuning_dir.abspath, spec.tuned_tvm(), "")
    keys = ansor.tuning.driver.records_file_tasks(records.abspath)
    state = env.Value(f"tuning {mode} {_tuning_flags(env)} tasks {store.fingerprint(keys) if keys else 'unknown'}")
    node = env._AnsorTune(records, [*sources, state], ANSOR_TUNING_FLAGS=_tuning_flags(env),
                          ANSOR_SHAPE_FLAGS=shape_flags,
                          ANSOR_TUNING_DIR_NODE=tuning_dir, ENV=_process_env(env))
    env.Clean(node, out.Dir(f"../{out.name}.records.logs"))
    if mode in ("incremental", "full"):
        # Steps that may measure share one side effect, so `scons -j` never runs two at once: measurements of
        # concurrent tuning runs on the same cores would disturb each other. Compiles still run in parallel.
        env.SideEffect(tuning_dir.File(".measuring"), node)
    return node[0]


def ansor_check(env, package, model, **overrides):
    """Run the package in a fresh process and compare it with onnxruntime; writes PACKAGE.check.txt."""
    env = env.Override(overrides) if overrides else env
    package = env.arg2nodes(package, env.File)
    manifest = package[0]
    stamp = manifest.dir.File(f"../{manifest.dir.name}.check.txt")
    return env._AnsorCheck(stamp, [*package, *env.arg2nodes(model, env.File)], ENV=_process_env(env))


def generate(env):
    env.SetDefault(
        ANSOR_PYTHON=sys.executable,
        ANSOR_VERSIONS=_versions(),
        ANSOR_FLAGS="",
        ANSOR_SHAPES={},
        ANSOR_CHECK_REPEAT=50,
        # $( $) keeps the interpreter's path out of the signature: checkouts on other machines share artifacts.
        ANSOR_COM="$( $ANSOR_PYTHON $) -m ansor_build $ANSOR_FLAGS build ${SOURCES[0]} --target ${SOURCES[1]} "
                  "-o ${TARGET.dir} $ANSOR_SHAPE_FLAGS $ANSOR_RECORDS_FLAGS",
        ANSOR_COMSTR="",
        ANSOR_TUNE="off",
        ANSOR_TUNING_DIR="#tuning",
        ANSOR_TUNECOM="$( $ANSOR_PYTHON $) -m ansor_build $ANSOR_FLAGS tune ${SOURCES[0]} --target ${SOURCES[1]} "
                      "--tuning-dir $ANSOR_TUNING_DIR_NODE --tune $ANSOR_TUNE $ANSOR_TUNING_FLAGS "
                      "$ANSOR_SHAPE_FLAGS --records-out $TARGET",
        ANSOR_TUNECOMSTR="",
        ANSOR_CHECKCOM="$( $ANSOR_PYTHON $) -m ansor_build check ${SOURCES[0].dir} --model ${SOURCES[-1]} "
                       "--repeat $ANSOR_CHECK_REPEAT --stamp $TARGET",
        ANSOR_CHECKCOMSTR="",
    )
    env["BUILDERS"]["_AnsorPackage"] = SCons.Builder.Builder(
        action=SCons.Action.Action("$ANSOR_COM", "$ANSOR_COMSTR"),
        source_scanner=SCons.Scanner.Scanner(_scan_external_data, name="AnsorOnnx"))
    env["BUILDERS"]["_AnsorTune"] = SCons.Builder.Builder(
        action=SCons.Action.Action("$ANSOR_TUNECOM", "$ANSOR_TUNECOMSTR"),
        source_scanner=SCons.Scanner.Scanner(_scan_external_data, name="AnsorOnnxTune"))
    env["BUILDERS"]["_AnsorCheck"] = SCons.Builder.Builder(

        action=SCons.Action.Action("$ANSOR_CHECKCOM", "$ANSOR_CHECKCOMSTR"))
    env.AddMethod(ansor_model, "AnsorModel")
    env.AddMethod(ansor_check, "AnsorCheck")


def exists(env):
    try:
        import ansor_build  # noqa: F401
    except ImportError:
        return False
    return True
