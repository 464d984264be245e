"""The README.md written into every package: what it is, what the device needs, how to run it."""

from __future__ import annotations


def _sig(entries: list[dict]) -> str:
    return "\n".join(f"| `{e['name']}` | {e['dtype']} | {e['shape']} |" for e in entries)


def package_readme(manifest: dict) -> str:
    model = manifest["model"]
    target = manifest["target"]
    runtime = manifest["runtime"]
    libs = ", ".join(f"`{lib}`" for lib in runtime["libs"]) or "none (the device provides libtvm_runtime/libtvm_ffi)"
    threads = runtime.get("threads")
    thread_line = (f"The loaders set `TVM_NUM_THREADS={threads}` unless the environment sets it."
                   if threads else "Set `TVM_NUM_THREADS` to the device's core count (TVM's default on x86 is half).")
    runner = ("bin/ansor_runner" in manifest.get("files", {})) or runtime.get("runner")
    return f"""# {model['name']} for {target['name']}

Built by ansor-build {manifest['versions']['ansor-build']} with Apache TVM {manifest['versions']['apache-tvm']}
from `{model['file']}` (sha256 `{model['sha256'][:16]}...`), for `{target['triple']}` ({target['device']}).

## Inputs
| name | dtype | shape |
|---|---|---|
{_sig(manifest['inputs'])}

## Outputs
| name | dtype | shape |
|---|---|---|
{_sig(manifest['outputs'])}

## Files
- `model.so`: the compiled model (a Relax VM executable, weights embedded).
- `runtime/`: TVM runtime libraries for the device: {libs}.
- `loader.py`: Python loader (needs numpy and the TVM runtime: `pip install apache-tvm`).
- `src/`: the C++ runner's source; {"`bin/ansor_runner`: the runner built for the device." if runner else "no runner binary was built for this target."}
- `manifest.json`: model, target, inputs/outputs, versions and the sha256 of every file.

## Run
C++ (nothing but this directory is needed on the device):

    bin/ansor_runner [--input FILE.npy ...] [--output-dir DIR] [--repeat N]

Python:

    python loader.py [--input NAME=FILE.npy ...] [--save outputs.npz] [--repeat N]

    import loader; model = loader.load("."); outputs = model(x)

Without inputs, both run on the same deterministic inputs (see `loader.default_input`).
{thread_line}
"""
