// ansor_runner: run an ansor-build package (Relax VM executable exported as model.so).
//
// Written against the tvm_ffi headers (and dlpack) only; links libtvm_runtime (which registers
// the Relax VM loader) and libtvm_ffi. Package layout:
//   PKG/manifest.json  PKG/model.so  PKG/runtime/libtvm_{runtime,ffi}.so  PKG/bin/ansor_runner
//
// Usage:
//   ansor_runner [--model PATH] [--manifest PATH] [--input FILE.npy]... [--output-dir DIR]
//                [--warmup N] [--repeat N] [--device cpu|cuda] [--threads N]
//
// Without --input, inputs are generated from the manifest's "inputs" (shape + dtype), element i
// (flat C-order index) being:
//   float types: ((i * 7919) % 1000) / 1000.0 - 0.5   (computed in double, then converted)
//   int types:   (i * 7919) % 7
//   bool:        (i * 7919) % 2
//
// Output (stdout): one "runner ..." header line (threads= is the count the runtime reports),
// one "output ..." line per output, and a final
//   latency_ms median=<ms> min=<ms> repeat=<N>
// Errors: one line "ansor_runner: error: ..." on stderr, exit code 1 (2 for usage errors).
#include <dlfcn.h>
#include <dlpack/dlpack.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "npy.h"

namespace ffi = tvm::ffi;

namespace {

constexpr const char* kProg = "ansor_runner";
constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

/*! \brief A failure with a complete one-line message. */
class RunnerError : public std::runtime_error {
 public:
  explicit RunnerError(const std::string& msg, int code = 1) : std::runtime_error(msg), code(code) {}
  int code;
};

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  // collapse runs of spaces and trim
  std::string out;
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

struct Options {
  std::string model;
  std::string manifest;
  std::vector<std::string> inputs;
  std::string output_dir;
  int warmup = 1;
  int repeat = 10;
  std::string device;  // empty: the manifest's target.device, else cpu
  int threads = 0;  // 0: not given
};

const char* kUsage =
    "usage: ansor_runner [--model PATH] [--manifest PATH] [--input FILE.npy]... [--output-dir DIR]\n"
    "                    [--warmup N] [--repeat N] [--device cpu|cuda] [--threads N]\n"
    "  --model       Relax VM executable (default: <exe dir>/../model.so)\n"
    "  --manifest    package manifest (default: manifest.json beside the model)\n"
    "  --input       one .npy per parameter of \"main\", in order; without any, inputs are\n"
    "                generated from the manifest (floats: ((i*7919)%1000)/1000-0.5,\n"
    "                ints: (i*7919)%7, bool: (i*7919)%2, i = flat C-order index)\n"
    "  --output-dir  write output k as DIR/output_<k>.npy\n"
    "  --warmup      untimed runs before timing (default 1)\n"
    "  --repeat      timed runs (default 10)\n"
    "  --device      cpu or cuda (default: the manifest's target.device, else cpu)\n"
    "  --threads     runtime threads (sets TVM_NUM_THREADS; default: manifest runtime.threads\n"
    "                else all CPUs, unless TVM_NUM_THREADS is set)\n";

int ParseInt(const std::string& flag, const std::string& v, int min_value) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < min_value || x > INT_MAX) {
    throw RunnerError(flag + " expects an integer >= " + std::to_string(min_value) + ", got '" + v + "'", 2);
  }
  return static_cast<int>(x);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool has_inline = false;
    size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_inline = true;
    }
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= argc) throw RunnerError("option " + a + " needs a value", 2);
      return std::string(argv[++i]);
    };
    if (a == "--model") {
      o.model = next();
    } else if (a == "--manifest") {
      o.manifest = next();
    } else if (a == "--input") {
      o.inputs.push_back(next());
    } else if (a == "--output-dir") {
      o.output_dir = next();
    } else if (a == "--warmup") {
      o.warmup = ParseInt(a, next(), 0);
    } else if (a == "--repeat") {
      o.repeat = ParseInt(a, next(), 1);
    } else if (a == "--device") {
      o.device = next();
      if (o.device != "cpu" && o.device != "cuda") {
        throw RunnerError("--device must be cpu or cuda, got '" + o.device + "'", 2);
      }
    } else if (a == "--threads") {
      o.threads = ParseInt(a, next(), 1);
    } else {
      throw RunnerError("unknown argument '" + std::string(argv[i]) + "' (see --help)", 2);
    }
  }
  return o;
}

// ---------------------------------------------------------------- paths

std::string ExeDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw RunnerError("cannot resolve /proc/self/exe; pass --model");
  std::string p(buf, static_cast<size_t>(n));
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

std::string DirName(const std::string& p) {
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return p;
  return std::string(buf);
}

void MakeDirs(const std::string& dir) {
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    size_t j = dir.find('/', i);
    if (j == std::string::npos) j = dir.size();
    cur = dir.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0777) != 0 && errno != EEXIST) {
      throw RunnerError("cannot create output directory " + dir + ": " + std::strerror(errno));
    }
    i = j + 1;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw RunnerError("output directory " + dir + " is not a directory");
  }
}

// ---------------------------------------------------------------- dtypes

std::string DTypeName(DLDataType t) { return std::string(ffi::DLDataTypeToString(t)); }

bool ToNpyDType(DLDataType t, ansor::npy::DType* out) {
  if (t.lanes != 1) return false;
  ansor::npy::DType d;
  d.itemsize = t.bits / 8;
  switch (t.code) {
    case kDLFloat:
      d.kind = 'f';
      break;
    case kDLInt:
      d.kind = 'i';
      break;
    case kDLUInt:
      d.kind = 'u';
      break;
    case kDLBool:
      d.kind = 'b';
      break;
    default:
      return false;
  }
  if (t.bits % 8 != 0 || !ansor::npy::IsSupported(d)) return false;
  *out = d;
  return true;
}

DLDataType FromNpyDType(ansor::npy::DType d) {
  DLDataType t;
  t.lanes = 1;
  t.bits = static_cast<uint8_t>(d.itemsize * 8);
  switch (d.kind) {
    case 'f':
      t.code = kDLFloat;
      break;
    case 'i':
      t.code = kDLInt;
      break;
    case 'u':
      t.code = kDLUInt;
      break;
    default:
      t.code = kDLBool;
      t.bits = 8;
      break;
  }
  return t;
}

double ElementAsDouble(const unsigned char* p, ansor::npy::DType d) {
  switch (d.kind) {
    case 'f':
      if (d.itemsize == 2) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return ansor::npy::HalfToFloat(h);
      } else if (d.itemsize == 4) {
        float f;
        std::memcpy(&f, p, 4);
        return f;
      } else {
        double f;
        std::memcpy(&f, p, 8);
        return f;
      }
    case 'i':
      switch (d.itemsize) {
        case 1:
          return static_cast<double>(*reinterpret_cast<const int8_t*>(p));
        case 2: {
          int16_t v;
          std::memcpy(&v, p, 2);
          return v;
        }
        case 4: {
          int32_t v;
          std::memcpy(&v, p, 4);
          return v;
        }
        default: {
          int64_t v;
          std::memcpy(&v, p, 8);
          return static_cast<double>(v);
        }
      }
    case 'u':
      switch (d.itemsize) {
        case 1:
          return *p;
        case 2: {
          uint16_t v;
          std::memcpy(&v, p, 2);
          return v;
        }
        case 4: {
          uint32_t v;
          std::memcpy(&v, p, 4);
          return v;
        }
        default: {
          uint64_t v;
          std::memcpy(&v, p, 8);
          return static_cast<double>(v);
        }
      }
    default:
      return *p != 0 ? 1.0 : 0.0;
  }
}

void StoreElement(unsigned char* p, ansor::npy::DType d, double fval, int64_t ival) {
  switch (d.kind) {
    case 'f':
      if (d.itemsize == 2) {
        uint16_t h = ansor::npy::FloatToHalf(static_cast<float>(fval));
        std::memcpy(p, &h, 2);
      } else if (d.itemsize == 4) {
        float f = static_cast<float>(fval);
        std::memcpy(p, &f, 4);
      } else {
        std::memcpy(p, &fval, 8);
      }
      return;
    case 'b':
      *p = static_cast<unsigned char>(ival != 0);
      return;
    default: {
      // two's complement little-endian truncation works for every int width
      uint64_t u = static_cast<uint64_t>(ival);
      for (int k = 0; k < d.itemsize; ++k) p[k] = static_cast<unsigned char>((u >> (8 * k)) & 0xff);
      return;
    }
  }
}

// ---------------------------------------------------------------- tensors

struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = ffi::GetDataSize(*t);
    size_t rounded = ((n + 63) / 64) * 64;
    if (rounded == 0) rounded = 64;
    t->data = std::aligned_alloc(64, rounded);
    if (t->data == nullptr) throw RunnerError("out of memory allocating " + std::to_string(n) + " bytes");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

/*! \brief A host-side array: dtype, shape, bytes. */
struct HostArray {
  ansor::npy::DType dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;
};

ffi::Function GetGlobal(const char* name) {
  std::optional<ffi::Function> f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) throw RunnerError(std::string("TVM runtime function ") + name + " is not registered");
  return *f;
}

ffi::Tensor ToDevice(const HostArray& a, DLDevice dev) {
  DLDataType dt = FromNpyDType(a.dtype);
  ffi::Shape shape(a.shape.begin(), a.shape.end());
  if (dev.device_type == kDLCPU) {
    ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), shape, dt, dev);
    if (!a.data.empty()) std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
    return t;
  }
  ffi::Tensor t =
      GetGlobal("runtime.TVMTensorAllocWithScope")(shape, dt, dev, ffi::String("global")).cast<ffi::Tensor>();
  GetGlobal("runtime.TVMTensorCopyFromBytes")(t, const_cast<void*>(static_cast<const void*>(a.data.data())),
                                               static_cast<int64_t>(a.data.size()));
  return t;
}

HostArray ToHost(const ffi::Tensor& t, const std::string& what) {
  HostArray h;
  if (!ToNpyDType(t.dtype(), &h.dtype)) {
    throw RunnerError(what + " has unsupported dtype " + DTypeName(t.dtype()));
  }
  ffi::ShapeView sv = t.shape();
  h.shape.assign(sv.begin(), sv.end());
  size_t nbytes = static_cast<size_t>(ansor::npy::NumElements(h.shape)) * static_cast<size_t>(h.dtype.itemsize);
  h.data.resize(nbytes);
  if (nbytes == 0) return h;
  if (t.device().device_type == kDLCPU && t.IsContiguous()) {
    const DLTensor* dl = t.GetDLTensorPtr();
    std::memcpy(h.data.data(), static_cast<const char*>(dl->data) + dl->byte_offset, nbytes);
  } else {
    // device tensor (or non-contiguous): let the runtime copy
    GetGlobal("runtime.TVMTensorCopyToBytes")(t, static_cast<void*>(h.data.data()), static_cast<int64_t>(nbytes));
  }
  return h;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string Fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

// ---------------------------------------------------------------- manifest

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool static_shape = true;
  std::string dtype;
};

struct Manifest {
  bool present = false;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  int threads = 0;
  std::string device;  // target.device: "cpu" or "cuda"
  std::vector<std::string> sass;  // device_code.sass: "sm_80", ...
  std::vector<std::string> ptx;   // device_code.ptx: "compute_80", ...
  std::vector<std::pair<std::string, int64_t>> sizes;  // files: name -> size (entries with an integer size)
};

std::optional<ffi::Any> MapGet(const ffi::Map<ffi::Any, ffi::Any>& m, const char* key) {
  auto it = m.find(ffi::String(key));
  if (it == m.end()) return std::nullopt;
  return (*it).second;
}

std::vector<TensorSpec> ParseSpecs(const ffi::Map<ffi::Any, ffi::Any>& root, const char* key,
                                   const std::string& path) {
  std::vector<TensorSpec> specs;
  auto v = MapGet(root, key);
  if (!v.has_value() || v->type_index() == ffi::TypeIndex::kTVMFFINone) return specs;
  auto arr = v->try_cast<ffi::Array<ffi::Any>>();
  if (!arr.has_value()) throw RunnerError(path + ": \"" + key + "\" must be a list");
  for (size_t i = 0; i < arr->size(); ++i) {
    auto m = (*arr)[i].try_cast<ffi::Map<ffi::Any, ffi::Any>>();
    if (!m.has_value()) throw RunnerError(path + ": " + key + "[" + std::to_string(i) + "] must be an object");
    TensorSpec s;
    s.name = key + std::string("_") + std::to_string(i);
    if (auto n = MapGet(*m, "name")) {
      if (auto ns = n->try_cast<ffi::String>()) s.name = std::string(*ns);
    }
    if (auto d = MapGet(*m, "dtype")) {
      if (auto ds = d->try_cast<ffi::String>()) s.dtype = std::string(*ds);
    }
    if (auto sh = MapGet(*m, "shape")) {
      auto dims = sh->try_cast<ffi::Array<ffi::Any>>();
      if (!dims.has_value()) throw RunnerError(path + ": " + key + "[" + std::to_string(i) + "].shape must be a list");
      for (const ffi::Any& d : *dims) {
        if (d.type_index() == ffi::TypeIndex::kTVMFFIInt) {
          int64_t x = d.cast<int64_t>();
          if (x < 0) s.static_shape = false;
          s.shape.push_back(x);
        } else {
          s.static_shape = false;  // symbolic (string) or unknown (null) dimension
          s.shape.push_back(-1);
        }
      }
    } else {
      s.static_shape = false;
    }
    specs.push_back(s);
  }
  return specs;
}

std::vector<std::string> StringList(const ffi::Map<ffi::Any, ffi::Any>& m, const char* key) {
  std::vector<std::string> out;
  if (auto v = MapGet(m, key)) {
    if (auto arr = v->try_cast<ffi::Array<ffi::Any>>()) {
      for (const ffi::Any& item : *arr) {
        if (auto str = item.try_cast<ffi::String>()) out.push_back(std::string(*str));
      }
    }
  }
  return out;
}

Manifest ReadManifest(const std::string& path) {
  Manifest man;
  if (!IsFile(path)) return man;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) throw RunnerError("cannot read manifest " + path);
  ffi::String err;
  ffi::Any root = ffi::json::Parse(ffi::String(ss.str()), &err);
  if (err.size() != 0) throw RunnerError("invalid JSON in manifest " + path + ": " + std::string(err));
  auto m = root.try_cast<ffi::Map<ffi::Any, ffi::Any>>();
  if (!m.has_value()) throw RunnerError("manifest " + path + " must hold a JSON object");
  man.present = true;
  man.inputs = ParseSpecs(*m, "inputs", path);
  man.outputs = ParseSpecs(*m, "outputs", path);
  if (auto tg = MapGet(*m, "target")) {
    if (auto tgm = tg->try_cast<ffi::Map<ffi::Any, ffi::Any>>()) {
      if (auto dv = MapGet(*tgm, "device")) {
        if (auto name = dv->try_cast<ffi::String>()) man.device = std::string(*name);
      }
    }
  }
  if (auto code = MapGet(*m, "device_code")) {
    if (auto cm = code->try_cast<ffi::Map<ffi::Any, ffi::Any>>()) {
      man.sass = StringList(*cm, "sass");
      man.ptx = StringList(*cm, "ptx");
    }
  }
  if (auto files = MapGet(*m, "files")) {
    if (auto fm = files->try_cast<ffi::Map<ffi::Any, ffi::Any>>()) {
      for (const auto& kv : *fm) {
        auto name = kv.first.try_cast<ffi::String>();
        auto entry = kv.second.try_cast<ffi::Map<ffi::Any, ffi::Any>>();
        if (!name.has_value() || !entry.has_value()) continue;
        if (auto size = MapGet(*entry, "size")) {
          if (size->type_index() == ffi::TypeIndex::kTVMFFIInt) {
            man.sizes.emplace_back(std::string(*name), size->cast<int64_t>());
          }
        }
      }
    }
  }
  if (auto rt = MapGet(*m, "runtime")) {
    if (auto rtm = rt->try_cast<ffi::Map<ffi::Any, ffi::Any>>()) {
      if (auto th = MapGet(*rtm, "threads")) {
        if (th->type_index() == ffi::TypeIndex::kTVMFFIInt) {
          int64_t n = th->cast<int64_t>();
          if (n > 0 && n <= INT_MAX) man.threads = static_cast<int>(n);
        }
      }
    }
  }
  return man;
}

// Fails with one line when model.so or a runtime library differs in size from the package's manifest. A
// truncated model.so is mapped and read past its end when it loads, which kills the process with SIGBUS and no
// message. Checked only when the manifest is the package's own (beside `model`, a real path); sizes only (the
// Python loader and `ansor-build verify` compare hashes too). Runtime libraries the dynamic loader mapped before
// main() are checked too, though one truncated badly enough dies (SIGBUS) before main() can say anything.
void CheckFileSizes(const Manifest& man, const std::string& manifest_path, const std::string& model) {
  std::string dir = DirName(manifest_path);
  if (RealPath(dir + "/model.so") != model) return;
  for (const auto& [name, size] : man.sizes) {
    if (name != "model.so" && name.rfind("runtime/", 0) != 0) continue;
    std::string path = dir + "/" + name;
    struct stat st;
    std::string problem;
    if (::stat(path.c_str(), &st) != 0) {
      problem = errno == ENOENT ? "missing (the manifest lists " + std::to_string(size) + " bytes)"
                                : std::string("cannot read it: ") + std::strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
      problem = "not a regular file";
    } else if (static_cast<int64_t>(st.st_size) != size) {
      problem = std::string(st.st_size < size ? "truncated" : "larger than built") + " (" +
                std::to_string(static_cast<int64_t>(st.st_size)) + " bytes, manifest says " + std::to_string(size) +
                ")";
    }
    if (!problem.empty()) {
      throw RunnerError(path + ": " + problem + "; rebuild the package or run `ansor-build verify " + dir + "`");
    }
  }
}

// ---------------------------------------------------------------- GPU code

struct SmVersion {
  int major = 0, minor = 0;
  bool specific = false;  // an 'a' variant (sm_90a): that exact GPU only
};

// "sm_86" / "compute_90a" -> {8, 6, false} / {9, 0, true}; "8.6" (a device's compute version) -> {8, 6, false}.
SmVersion ParseSm(const std::string& arch) {
  SmVersion v;
  size_t dot = arch.find('.');
  if (dot != std::string::npos) {
    v.major = std::atoi(arch.substr(0, dot).c_str());
    v.minor = std::atoi(arch.substr(dot + 1).c_str());
    return v;
  }
  std::string digits = arch.substr(arch.find('_') + 1);
  while (!digits.empty() && (digits.back() == 'a' || digits.back() == 'f')) {
    v.specific = v.specific || digits.back() == 'a';
    digits.pop_back();
  }
  if (digits.size() < 2) return v;
  v.major = std::atoi(digits.substr(0, digits.size() - 1).c_str());
  v.minor = digits.back() - '0';
  return v;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Why the GPU of `version` cannot run the manifest's device code, or "" when it can. The same rule as
// loader.py's gpu_code_problem: SASS for sm_XY runs on the same major with minor >= Y; PTX for compute_XY is
// compiled by the driver for any GPU >= X.Y; 'a' variants run on that exact GPU only.
std::string GpuCodeProblem(const Manifest& man, const std::string& version) {
  SmVersion gpu = ParseSm(version);
  bool newer_than_all = true;
  for (const std::string& arch : man.sass) {
    SmVersion a = ParseSm(arch);
    if (a.major == gpu.major && (a.minor == gpu.minor || (a.minor < gpu.minor && !a.specific))) return "";
    if (a.major > gpu.major || (a.major == gpu.major && a.minor >= gpu.minor)) newer_than_all = false;
  }
  for (const std::string& arch : man.ptx) {
    SmVersion a = ParseSm(arch);
    bool same = a.major == gpu.major && a.minor == gpu.minor;
    bool older = a.major < gpu.major || (a.major == gpu.major && a.minor < gpu.minor);
    if (same || (older && !a.specific)) return "";
  }
  std::string here = "sm_" + std::to_string(gpu.major) + std::to_string(gpu.minor);
  std::string carried = "SASS for " + (man.sass.empty() ? std::string("no arch") : Join(man.sass)) +
                        (man.ptx.empty() ? std::string(", no PTX") : " and PTX for " + Join(man.ptx));
  std::string fix = "rebuild it for this GPU (a target with `tvm: {arch: " + here + "}`, as ansor-build's cuda-" +
                    here + " preset)";
  if (man.ptx.empty() && newer_than_all) {
    fix += ", or keep PTX (`runtime: {ptx: true}`) so that newer GPUs compile it when it loads";
  }
  return "this GPU is " + here + " and the package's device code cannot run on it (" + carried + "): " + fix;
}

// Fails with an actionable line when CUDA device 0 is missing or cannot run the package's device code; without
// this, the first kernel fails to load with CUDA_ERROR_NO_BINARY_FOR_GPU.
void CheckGpu(const Manifest& man, const std::string& model) {
  ffi::Function attr = GetGlobal("runtime.GetDeviceAttr");
  const int cuda = static_cast<int>(kDLCUDA);
  if (attr(cuda, 0, 0).cast<int64_t>() == 0) {  // kExist
    throw RunnerError(model + ": no CUDA GPU found (the NVIDIA driver loaded, but it lists no device 0)");
  }
  if (man.sass.empty() && man.ptx.empty()) return;  // no device_code entry: nothing to check
  std::string version = std::string(attr(cuda, 0, 4).cast<ffi::String>());  // kComputeVersion, "9.0"
  std::string problem = GpuCodeProblem(man, version);
  if (!problem.empty()) {
    std::string name = std::string(attr(cuda, 0, 5).cast<ffi::String>());  // kDeviceName
    throw RunnerError(model + ": " + name + ": " + problem);
  }
}

HostArray GenerateInput(const TensorSpec& s, const std::string& manifest_path) {
  if (!s.static_shape) {
    throw RunnerError("manifest input '" + s.name + "' has a dynamic or unknown shape; pass --input files");
  }
  if (s.dtype.empty()) throw RunnerError("manifest input '" + s.name + "' has no dtype (" + manifest_path + ")");
  DLDataType dt;
  try {
    dt = ffi::StringToDLDataType(ffi::String(s.dtype));
  } catch (const ffi::Error&) {
    throw RunnerError("manifest input '" + s.name + "' has unknown dtype '" + s.dtype + "'");
  }
  HostArray h;
  if (!ToNpyDType(dt, &h.dtype)) {
    throw RunnerError("manifest input '" + s.name + "' has dtype '" + s.dtype +
                      "' the runner cannot generate; pass --input files");
  }
  h.shape = s.shape;
  int64_t n = ansor::npy::NumElements(h.shape);
  h.data.resize(static_cast<size_t>(n) * static_cast<size_t>(h.dtype.itemsize));
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = (i * 7919) % 1000;
    double f = static_cast<double>(k) / 1000.0 - 0.5;
    int64_t iv = (h.dtype.kind == 'b') ? (i * 7919) % 2 : (i * 7919) % 7;
    StoreElement(h.data.data() + i * h.dtype.itemsize, h.dtype, f, iv);
  }
  return h;
}

// ---------------------------------------------------------------- outputs

void Flatten(const ffi::Any& v, std::vector<ffi::Any>* out) {
  if (auto arr = v.try_cast<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& x : *arr) Flatten(x, out);
  } else {
    out->push_back(v);
  }
}

void Stats(const HostArray& h, double* mn, double* mx, double* mean) {
  int64_t n = ansor::npy::NumElements(h.shape);
  if (n == 0) {
    *mn = *mx = *mean = std::nan("");
    return;
  }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0.0;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    double x = ElementAsDouble(h.data.data() + i * h.dtype.itemsize, h.dtype);
    if (std::isnan(x)) {
      nan = true;
      continue;
    }
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum += x;
  }
  *mn = lo;
  *mx = hi;
  *mean = nan ? std::nan("") : sum / static_cast<double>(n);
}

// ---------------------------------------------------------------- main

int Run(int argc, char** argv) {
  Options opt = ParseArgs(argc, argv);

  // model and manifest locations
  std::string model = opt.model.empty() ? ExeDir() + "/../model.so" : opt.model;
  if (!IsFile(model)) throw RunnerError("model file not found: " + model);
  model = RealPath(model);  // the module loader needs a path with a '/'
  std::string manifest_path = opt.manifest.empty() ? DirName(model) + "/manifest.json" : opt.manifest;
  if (!opt.manifest.empty() && !IsFile(manifest_path)) {
    throw RunnerError("manifest file not found: " + manifest_path);
  }
  Manifest man = ReadManifest(manifest_path);
  CheckFileSizes(man, manifest_path, model);  // before the model is mapped (below)
  if (opt.device.empty()) opt.device = man.device.empty() ? "cpu" : man.device;
  if (opt.device != "cpu" && opt.device != "cuda") {
    throw RunnerError("manifest target.device must be cpu or cuda, got '" + opt.device + "'");
  }

  // threads: must be set before the runtime's thread pool starts (first parallel call)
  if (opt.threads > 0) {
    ::setenv("TVM_NUM_THREADS", std::to_string(opt.threads).c_str(), 1);
  } else if (std::getenv("TVM_NUM_THREADS") == nullptr) {
    // TVM's default on x86 is half the CPUs (it assumes hyper-threads): one thread on a 2-core device.
    // Like loader.py: the target's runtime.threads, else every CPU of this machine.
    unsigned cpus = std::thread::hardware_concurrency();
    int n = man.threads > 0 ? man.threads : static_cast<int>(cpus > 0 ? cpus : 1);
    ::setenv("TVM_NUM_THREADS", std::to_string(n).c_str(), 1);
  }
  // Like loader.py: pool threads not pinned to cores (a pinned thread waits whenever another process has its core).
  if (std::getenv("TVM_BIND_THREADS") == nullptr) ::setenv("TVM_BIND_THREADS", "0", 1);

  // inputs (read before loading the model so that file errors come first)
  std::vector<HostArray> host_inputs;
  if (!opt.inputs.empty()) {
    for (const std::string& p : opt.inputs) {
      ansor::npy::Array a;
      try {
        a = ansor::npy::Load(p);
      } catch (const ansor::npy::NpyError& e) {
        throw RunnerError(e.what());
      }
      host_inputs.push_back(HostArray{a.dtype, a.shape, std::move(a.data)});
    }
  } else {
    if (!man.present) {
      throw RunnerError("no --input given and no manifest at " + manifest_path + " to generate inputs from");
    }
    for (const TensorSpec& s : man.inputs) host_inputs.push_back(GenerateInput(s, manifest_path));
  }

  DLDevice dev{kDLCPU, 0};
  if (opt.device == "cuda") {
    dev = DLDevice{kDLCUDA, 0};
    std::string lib = ExeDir() + "/../runtime/libtvm_runtime_cuda.so";
    if (!IsFile(lib)) lib = "libtvm_runtime_cuda.so";
    if (::dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* e = ::dlerror();
      throw RunnerError(std::string("cannot load the TVM CUDA runtime (a GPU package needs an NVIDIA GPU and its "
                                    "driver's libcuda.so.1): ") + (e ? e : lib));
    }
    CheckGpu(man, model);
  }

  // load the executable and initialize the VM
  ffi::Module lib = ffi::Module::LoadFromFile(ffi::String(model));
  ffi::Optional<ffi::Function> load_exec = lib->GetFunction("vm_load_executable", true);
  if (!load_exec.has_value()) {
    throw RunnerError(model + " is not a Relax VM executable (no vm_load_executable)");
  }
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  ffi::Function init = vm->GetFunction("vm_initialization", false).value();
  if (dev.device_type == kDLCPU) {
    init(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  } else {
    init(static_cast<int>(dev.device_type), dev.device_id, kPooledAllocator, static_cast<int>(kDLCPU), 0,
         kPooledAllocator);
  }
  ffi::Optional<ffi::Function> main_opt = vm->GetFunction("main", false);
  if (!main_opt.has_value()) throw RunnerError(model + " has no function \"main\"");
  ffi::Function main_fn = main_opt.value();
  int64_t arity = -1;
  if (auto f = vm->GetFunction("get_function_arity", false)) {
    arity = (*f)(ffi::String("main")).cast<int64_t>();
  }
  if (arity >= 0 && static_cast<int64_t>(host_inputs.size()) != arity) {
    throw RunnerError("model \"main\" takes " + std::to_string(arity) + " input(s), got " +
                      std::to_string(host_inputs.size()) +
                      (opt.inputs.empty() ? " from the manifest" : " --input file(s)"));
  }

  // thread count actually used by the runtime (also starts the pool after TVM_NUM_THREADS is set)
  int64_t threads = -1;
  if (auto f = ffi::Function::GetGlobal("runtime.NumThreads")) threads = (*f)().cast<int64_t>();

  std::vector<ffi::Tensor> dev_inputs;
  for (const HostArray& h : host_inputs) dev_inputs.push_back(ToDevice(h, dev));
  std::vector<ffi::AnyView> args(dev_inputs.begin(), dev_inputs.end());

  // Every run ends with a sync of the device's default stream (0.27 takes the handle as an int). On the CPU it
  // is a no-op, made anyway so that CPU runs check the call that GPU timings depend on.
  ffi::Function sync = GetGlobal("runtime.Device_StreamSync");
  auto call = [&]() {
    ffi::Any rv;
    main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &rv);
    sync(dev, static_cast<int64_t>(0));
    return rv;
  };

  const char* env_threads = std::getenv("TVM_NUM_THREADS");
  const char* env_bind = std::getenv("TVM_BIND_THREADS");
  std::printf("runner model=%s device=%s threads=%lld TVM_NUM_THREADS=%s inputs=%zu TVM_BIND_THREADS=%s\n",
              model.c_str(), opt.device.c_str(), static_cast<long long>(threads),
              env_threads ? env_threads : "unset", host_inputs.size(), env_bind ? env_bind : "unset");

  // first run: report and save outputs
  ffi::Any result = call();
  std::vector<ffi::Any> outs;
  Flatten(result, &outs);
  if (!opt.output_dir.empty()) MakeDirs(opt.output_dir);
  bool names_ok = man.outputs.size() == outs.size();
  for (size_t k = 0; k < outs.size(); ++k) {
    std::string name = names_ok ? man.outputs[k].name : "output_" + std::to_string(k);
    auto t = outs[k].try_cast<ffi::Tensor>();
    if (!t.has_value()) {
      std::printf("output %zu name=%s type=%s (not a tensor)\n", k, name.c_str(), outs[k].GetTypeKey().c_str());
      continue;
    }
    HostArray h = ToHost(*t, "output " + std::to_string(k));
    double mn, mx, mean;
    Stats(h, &mn, &mx, &mean);
    std::printf("output %zu name=%s shape=%s dtype=%s min=%s max=%s mean=%s\n", k, name.c_str(),
                ShapeString(h.shape).c_str(), DTypeName(t->dtype()).c_str(), Fmt(mn).c_str(), Fmt(mx).c_str(),
                Fmt(mean).c_str());
    if (!opt.output_dir.empty()) {
      std::string path = opt.output_dir + "/output_" + std::to_string(k) + ".npy";
      try {
        ansor::npy::Save(path, h.dtype, h.shape, h.data.data(), h.data.size());
      } catch (const ansor::npy::NpyError& e) {
        throw RunnerError(e.what());
      }
    }
  }
  result = ffi::Any();
  outs.clear();
  std::fflush(stdout);

  // timing
  for (int i = 0; i < opt.warmup; ++i) call();
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(opt.repeat));
  for (int i = 0; i < opt.repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ffi::Any rv = call();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  size_t n = ms.size();
  double median = (n % 2) ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  std::printf("latency_ms median=%.4f min=%.4f repeat=%d\n", median, ms.front(), opt.repeat);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const RunnerError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", kProg, OneLine(e.what()).c_str());
    return e.code;
  } catch (const ffi::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s: %s\n", kProg, e.kind().c_str(), OneLine(e.message()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", kProg, OneLine(e.what()).c_str());
    return 1;
  }
}
