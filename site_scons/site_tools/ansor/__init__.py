"""SCons tool `ansor`: `env.AnsorModel(...)` turns an ONNX model into a package directory.

Thin glue: it declares builders, outputs and dependencies; `ansor_build` does the work in a subprocess
(`python -m ansor_build build ...`), so TVM is never imported by SCons itself and `-j` builds run in parallel.

    env = Environment(tools=["default", "ansor"], toolpath=[ansor_build.scons_toolpath()])
    pkg = env.AnsorModel("build/x86_64/convnet", "models/convnet.onnx", ANSOR_TARGET="targets/x86_64.yaml")
    env.AnsorCheck(pkg, "models/convnet.onnx")   # fresh-process run compared with onnxruntime

Rebuild signature (and so the CacheDir key; `ansor_build.buildkey` defines it, `ansor-build explain` prints it):
the command line (model, target and shape arguments, paths relative to the top directory; the interpreter path is
excluded), the contents of the model and its external-data files, of the target YAML and every file it `extends`,
of the runner sources, the ansor-build / apache-tvm / apache-tvm-ffi versions, and the identity of the C++ compiler
(and nvcc) that write the package's binaries.

Tuning (ANSOR_TUNE=reuse|incremental|full) adds a step before the compile: `python -m ansor_build tune` writes
PACKAGE.records.json, the records the package applies, and the compile depends on that file's content only. So a
change of tuning mode or budget re-runs the (cheap, when nothing is left to tune) tuning step but recompiles only
if the applied records change. The tuning step's signature adds the mode, the budgets (not in reuse mode), the
effective TVM target, and the content of the store files of the model's tasks (found by a scanner through the
model's task list in the store, `ansor_build.tuning.tasklist`): new records for those tasks re-run it, records of
other models do not, and a fresh checkout of a committed store gets the same key (mtimes are not in it).

ANSOR_ARCHIVE=1 also writes PACKAGE.tar.gz (reproducible; `ansor-build verify` checks it).

The wheel ships this file as `ansor_build/site_tools/ansor/__init__.py` (pyproject.toml's package-dir), where
`ansor_build.scons_toolpath()` finds it in an installed ansor-build; so it imports `ansor_build` absolutely only.
"""

import os
import sys
from pathlib import Path

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
    import ansor_build.buildkey
    import ansor_build.model
    import ansor_build.package.layout
    import ansor_build.target
    import ansor_build.tuning
    import ansor_build.tuning.tasklist

    import ansor_build.version
    import ansor_build.runner

    return ansor_build


def _user_error(err):
    return SCons.Errors.UserError(str(err))


def _versions():
    """`ansor-build=X apache-tvm=Y apache-tvm-ffi=Z`, read from package metadata (TVM is not imported)."""
    return _ansor().buildkey.versions_text()


def _process_env(env):
    process_env = dict(env["ENV"])
    for name, value in os.environ.items():
        if name in _PASS_ENV or name.startswith(_PASS_ENV_PREFIXES):
            process_env.setdefault(name, value)
    return process_env


def _shape_dict(shapes):
    if not shapes:
        return {}
    if isinstance(shapes, str):
        return _ansor().model.parse_shapes(shapes)
    try:
        return {str(name): [int(d) for d in dims] for name, dims in shapes.items()}
    except (AttributeError, TypeError, ValueError):
        raise _ansor().InputError(f"ANSOR_SHAPES: {shapes!r} is not allowed (expected {{'input': [1, 3, 224, 224]}} "
                                  f"or 'input=1,3,224,224')") from None


def _shape_flags(shapes):
    shapes = _shape_dict(shapes)
    return " ".join(f"--shape {name}={','.join(str(d) for d in dims)}" for name, dims in sorted(shapes.items()))


def _archive_enabled(env) -> bool:
    value = str(env.subst("$ANSOR_ARCHIVE")).strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SCons.Errors.UserError(f"ANSOR_ARCHIVE: '{value}' is not allowed (expected one of: 0, 1)")


def ansor_model(env, target, source, **overrides):
    """Declare the package directory `target` built from the ONNX model `source` for `ANSOR_TARGET`.

    Returns the package's file nodes (manifest.json first; with ANSOR_ARCHIVE, PACKAGE.tar.gz last).
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
        host_tools = ansor.buildkey.host_tools_text(spec)
    except ansor.AnsorError as err:
        raise _user_error(err) from None
    out = env.Dir(target)
    targets = [out.File(name) for name in files]
    # Source order matters to $ANSOR_COM and $ANSOR_TUNECOM: the model first, the target YAML second.
    # Every input of ansor_build.buildkey is here (and nothing else), so CacheDir shares what is shareable.
    versions = env.Value(env.subst("$ANSOR_VERSIONS"))
    common = [model, env.File(target_yaml), *[env.File(str(f)) for f in ansor.buildkey.target_files(spec)[1:]]]
    records = _tuning_step(env, ansor, spec, out, [*common, versions], shape_flags)
    sources = [*common, *[env.File(str(f)) for f in ansor.buildkey.source_files()], versions, env.Value(host_tools)]
    if records is not None:
        sources.append(records)
    nodes = env._AnsorPackage(targets, sources, ANSOR_SHAPE_FLAGS=shape_flags, ENV=_process_env(env),
                              ANSOR_RECORDS_FLAGS=f"--records {records.path}" if records is not None else "")
    # Precious: SCons must not delete the previous package's files before the build; the build replaces the
    # directory only once the new package is complete, so a failed or interrupted rebuild keeps the old one.
    env.Precious(nodes)
    env.Clean(nodes, [out, out.File(f"../{out.name}.link.log")])
    if _archive_enabled(env):
        archive = env._AnsorArchive(out.File(f"../{out.name}.tar.gz"), [*nodes, versions], ENV=_process_env(env))
        env.Precious(archive)  # written atomically: a failed rewrite keeps the previous archive
        nodes = nodes + archive
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
    flags = "" if mode == "reuse" else _tuning_flags(env)  # budgets change nothing when nothing is measured
    state = env.Value(ansor.buildkey.tuning_text(spec, mode, flags))
    node = env._AnsorTune(records, [*sources, state], ANSOR_TUNING_FLAGS=flags, ANSOR_SHAPE_FLAGS=shape_flags,
                          ANSOR_TUNING_DIR_NODE=tuning_dir, ANSOR_TUNE_STORE=store.directory,
                          ANSOR_TUNE_SHAPES=_shape_dict(env.get("ANSOR_SHAPES")), ENV=_process_env(env))
    env.Precious(node)  # rewritten atomically, and only when the applied records change
    env.Clean(node, out.Dir(f"../{out.name}.records.logs"))
    if mode in ("incremental", "full"):
        # Steps that may measure share one side effect, so `scons -j` never runs two at once: measurements of
        # concurrent tuning runs on the same cores would disturb each other. Compiles still run in parallel.
        env.SideEffect(tuning_dir.File(".measuring"), node)
    return node[0]


def _scan_task_records(node, env, path):
    """Implicit dependencies of a tuning step: the store files it reads for its model (their content is in the
    signature, their mtimes are not)."""
    model = node.sources[0]
    source = model.srcnode() if model.srcnode().exists() else model
    if not source.exists():
        return []  # a generated model: scanned again once it is built
    ansor = _ansor()
    files = [Path(source.abspath), *ansor.model.external_data_files(source.abspath)]
    found = ansor.tuning.tasklist.model_task_files(env["ANSOR_TUNE_STORE"], files, env["ANSOR_TUNE_SHAPES"])
    return [env.File(str(f)) for f in found]


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
        # The store's location is not in the signature either: the content of the files it reads is (scanner).
        ANSOR_TUNECOM="$( $ANSOR_PYTHON $) -m ansor_build $ANSOR_FLAGS tune ${SOURCES[0]} --target ${SOURCES[1]} "
                      "--tuning-dir $( $ANSOR_TUNING_DIR_NODE $) --tune $ANSOR_TUNE $ANSOR_TUNING_FLAGS "
                      "$ANSOR_SHAPE_FLAGS --records-out $TARGET",
        ANSOR_TUNECOMSTR="",
        ANSOR_ARCHIVE=0,
        ANSOR_ARCHIVECOM="$( $ANSOR_PYTHON $) -m ansor_build archive ${SOURCES[0].dir} -o $TARGET",
        ANSOR_ARCHIVECOMSTR="",
        ANSOR_CHECKCOM="$( $ANSOR_PYTHON $) -m ansor_build check ${SOURCES[0].dir} --model ${SOURCES[-1]} "
                       "--repeat $ANSOR_CHECK_REPEAT --stamp $TARGET",
        ANSOR_CHECKCOMSTR="",
    )
    env["BUILDERS"]["_AnsorPackage"] = SCons.Builder.Builder(
        action=SCons.Action.Action("$ANSOR_COM", "$ANSOR_COMSTR"),
        source_scanner=SCons.Scanner.Scanner(_scan_external_data, name="AnsorOnnx"))
    env["BUILDERS"]["_AnsorTune"] = SCons.Builder.Builder(
        action=SCons.Action.Action("$ANSOR_TUNECOM", "$ANSOR_TUNECOMSTR"),
        source_scanner=SCons.Scanner.Scanner(_scan_external_data, name="AnsorOnnxTune"),
        target_scanner=SCons.Scanner.Scanner(_scan_task_records, name="AnsorTaskRecords"))
    env["BUILDERS"]["_AnsorArchive"] = SCons.Builder.Builder(
        action=SCons.Action.Action("$ANSOR_ARCHIVECOM", "$ANSOR_ARCHIVECOMSTR"))
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
