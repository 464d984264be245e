"""The README.md written into every package: what it is, what the device needs, how to run it."""

from __future__ import annotations


def _sig(entries: list[dict]) -> str:
    return "\n".join(f"| `{e['name']}` | {e['dtype']} | {e['shape']} |" for e in entries)


def _without_runner(req: dict) -> str:
    """When the runner needs a newer glibc than the rest: what the Python-loader route needs."""
    runner = req.get("files", {}).get("bin/ansor_runner")
    rest = [entry["glibc"] for name, entry in req.get("files", {}).items() if not name.startswith("bin/") and
            entry.get("glibc")]
    if not runner or not rest or runner.get("glibc") != req.get("glibc"):
        return ""
    low = max(rest, key=lambda v: tuple(int(x) for x in v.split(".")))
    return "" if low == req["glibc"] else f" (for bin/ansor_runner; model.so and runtime/ alone need glibc >= {low})"


def _device_needs(manifest: dict) -> str:
    """What the device must provide, from the manifest's `requirements` (and `device_code` for GPUs)."""
    req = manifest.get("requirements")
    if not req:
        return ""
    lines = [f"- Linux on {req['arch']} (`{req['triple']}`)"
             + (f" with glibc >= {req['glibc']}" if req.get("glibc") else "")
             + (f" and libstdc++ >= GLIBCXX_{req['glibcxx']}" if req.get("glibcxx") else "")
             + _without_runner(req) + "."]
    if req.get("system_libraries"):
        lines.append("- System libraries loaded from the device: "
                     + ", ".join(f"`{lib}`" for lib in req["system_libraries"]) + ".")
    code = manifest.get("device_code")
    if code:
        arch = ", ".join(code["sass"])
        ptx = f" plus PTX for {', '.join(code['ptx'])} (newer GPUs compile it at load time)" if code["ptx"] else ""
        lines.append(f"- An NVIDIA GPU of architecture {arch}{ptx} and the NVIDIA driver >= "
                     f"{req.get('cuda_driver')} (`libcuda.so.1`); the device code was compiled at build time by "
                     f"nvcc {code['nvcc']}, so no CUDA compiler is needed on the device.")
    if not manifest["runtime"]["libs"]:
        lines.append("- The TVM runtime (`libtvm_runtime.so`, `libtvm_ffi.so`) of apache-tvm "
                     f"{manifest['versions']['apache-tvm']} built for this CPU, in `runtime/` (no official build "
                     "exists for it: build TVM's runtime from source on or for the device), and the runner built "
                     "from `src/` against it (or the Python loader with that TVM).")
    return "\n## What the device needs\n" + "\n".join(lines) + "\n"


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

    import loader; model = loader.load("."); outputs = model(x)   # numpy arrays in, numpy arrays out
    outputs = model(x, out=buffers)   # into your own arrays: no allocation per call

On a CPU, an input that is C-contiguous, 64-byte aligned and writeable is read where it is (others are copied into a
buffer of the loaded package), and outputs are the model's new buffers handed over, not copies. A loaded package
runs one call at a time.

Without inputs, both run on the same deterministic inputs (see `loader.default_input`).
{thread_line}
{_device_needs(manifest)}"""
