// Minimal .npy reader/writer for ansor_runner.
//
// Supports format versions 1.0, 2.0 and 3.0, C order only, little-endian (or byte-order-free
// single-byte) data, and the dtypes float16/32/64, int8/16/32/64, uint8/16/32/64 and bool.
// No dependency beyond the C++17 standard library.
#ifndef ANSOR_RUNNER_NPY_H_
#define ANSOR_RUNNER_NPY_H_

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace ansor {
namespace npy {

class NpyError : public std::runtime_error {
 public:
  explicit NpyError(const std::string& msg) : std::runtime_error(msg) {}
};

/*! \brief Element type: kind is 'f' (float), 'i' (signed int), 'u' (unsigned int) or 'b' (bool). */
struct DType {
  char kind = 'f';
  int itemsize = 4;
};

struct Array {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;  // little-endian, C order
};

inline int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline bool IsSupported(DType t) {
  switch (t.kind) {
    case 'f':
      return t.itemsize == 2 || t.itemsize == 4 || t.itemsize == 8;
    case 'i':
    case 'u':
      return t.itemsize == 1 || t.itemsize == 2 || t.itemsize == 4 || t.itemsize == 8;
    case 'b':
      return t.itemsize == 1;
    default:
      return false;
  }
}

/*! \brief numpy "descr" string, e.g. "<f4", "|b1". */
inline std::string Descr(DType t) {
  std::string s;
  s += (t.itemsize == 1) ? '|' : '<';
  s += t.kind;
  s += std::to_string(t.itemsize);
  return s;
}

namespace detail {

inline size_t SkipSpace(const std::string& s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// Position right after "'key':" (with optional spaces), or npos.
inline size_t FindValue(const std::string& header, const char* key) {
  std::string k1 = std::string("'") + key + "'";
  std::string k2 = std::string("\"") + key + "\"";
  size_t p = header.find(k1);
  size_t klen = k1.size();
  if (p == std::string::npos) {
    p = header.find(k2);
    klen = k2.size();
  }
  if (p == std::string::npos) return std::string::npos;
  p = SkipSpace(header, p + klen);
  if (p >= header.size() || header[p] != ':') return std::string::npos;
  return SkipSpace(header, p + 1);
}

inline uint32_t ReadLE(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace detail

/*! \brief Parse an .npy header dict; fills dtype and shape. Throws NpyError. */
inline void ParseHeader(const std::string& header, const std::string& where, DType* dtype,
                        std::vector<int64_t>* shape) {
  using detail::FindValue;
  using detail::SkipSpace;
  // descr
  size_t p = FindValue(header, "descr");
  if (p == std::string::npos || (header[p] != '\'' && header[p] != '"')) {
    throw NpyError(where + ": .npy header has no 'descr'");
  }
  char quote = header[p];
  size_t e = header.find(quote, p + 1);
  if (e == std::string::npos) throw NpyError(where + ": malformed .npy header");
  std::string descr = header.substr(p + 1, e - p - 1);
  if (descr.size() < 3) throw NpyError(where + ": unsupported .npy dtype '" + descr + "'");
  char order = descr[0];
  DType t;
  t.kind = descr[1];
  try {
    size_t used = 0;
    t.itemsize = std::stoi(descr.substr(2), &used);
    if (used != descr.size() - 2) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw NpyError(where + ": unsupported .npy dtype '" + descr + "'");
  }
  if (!IsSupported(t)) {
    throw NpyError(where + ": unsupported .npy dtype '" + descr +
                   "' (supported: float16/32/64, int8/16/32/64, uint8/16/32/64, bool)");
  }
  if (order == '>' && t.itemsize != 1) {
    throw NpyError(where + ": big-endian .npy data ('" + descr + "') is not supported");
  }
  if (order != '<' && order != '|' && order != '=' && order != '>') {
    throw NpyError(where + ": unsupported .npy dtype '" + descr + "'");
  }
  *dtype = t;
  // fortran_order
  p = FindValue(header, "fortran_order");
  if (p == std::string::npos) throw NpyError(where + ": .npy header has no 'fortran_order'");
  if (header.compare(p, 4, "True") == 0) {
    throw NpyError(where + ": Fortran-order .npy arrays are not supported (save a C-contiguous array)");
  }
  // shape
  p = FindValue(header, "shape");
  if (p == std::string::npos || header[p] != '(') {
    throw NpyError(where + ": .npy header has no 'shape'");
  }
  e = header.find(')', p);
  if (e == std::string::npos) throw NpyError(where + ": malformed .npy shape");
  shape->clear();
  std::string body = header.substr(p + 1, e - p - 1);
  size_t i = 0;
  while (true) {
    i = SkipSpace(body, i);
    if (i >= body.size()) break;
    size_t j = i;
    while (j < body.size() && std::isdigit(static_cast<unsigned char>(body[j]))) ++j;
    if (j == i) throw NpyError(where + ": malformed .npy shape '(" + body + ")'");
    shape->push_back(std::stoll(body.substr(i, j - i)));
    if (j < body.size() && body[j] == 'L') ++j;  // python2-style long suffix
    j = SkipSpace(body, j);
    if (j < body.size()) {
      if (body[j] != ',') throw NpyError(where + ": malformed .npy shape '(" + body + ")'");
      ++j;
    }
    i = j;
  }
}

/*! \brief Read a whole .npy file. Throws NpyError with a one-line message. */
inline Array Load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw NpyError("cannot open input file " + path + ": " + std::strerror(errno));
  std::vector<unsigned char> buf;
  unsigned char chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
  bool err = std::ferror(f) != 0;
  std::fclose(f);
  if (err) throw NpyError("error reading " + path);
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (buf.size() < 10 || std::memcmp(buf.data(), kMagic, 6) != 0) {
    throw NpyError(path + ": not a .npy file (bad magic)");
  }
  int major = buf[6];
  size_t hlen_size = (major == 1) ? 2 : (major == 2 || major == 3) ? 4 : 0;
  if (hlen_size == 0) throw NpyError(path + ": unsupported .npy format version " + std::to_string(major));
  if (buf.size() < 8 + hlen_size) throw NpyError(path + ": truncated .npy header");
  size_t hlen = detail::ReadLE(buf.data() + 8, static_cast<int>(hlen_size));
  size_t data_off = 8 + hlen_size + hlen;
  if (buf.size() < data_off) throw NpyError(path + ": truncated .npy header");
  std::string header(reinterpret_cast<const char*>(buf.data() + 8 + hlen_size), hlen);
  Array a;
  ParseHeader(header, path, &a.dtype, &a.shape);
  for (int64_t d : a.shape) {
    if (d < 0) throw NpyError(path + ": negative dimension in .npy shape");
  }
  size_t nbytes = static_cast<size_t>(NumElements(a.shape)) * static_cast<size_t>(a.dtype.itemsize);
  if (buf.size() - data_off < nbytes) {
    throw NpyError(path + ": truncated .npy data (expected " + std::to_string(nbytes) + " bytes, found " +
                   std::to_string(buf.size() - data_off) + ")");
  }
  a.data.assign(buf.begin() + static_cast<std::ptrdiff_t>(data_off),
                buf.begin() + static_cast<std::ptrdiff_t>(data_off + nbytes));
  return a;
}

/*! \brief Python-style shape tuple: "()", "(3,)", "(2, 4)". */
inline std::string ShapeTuple(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  s += ")";
  return s;
}

/*! \brief Write a version 1.0 .npy file (header padded to 64 bytes, like numpy). */
inline void Save(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data,
                 size_t nbytes) {
  std::string dict = "{'descr': '" + Descr(dtype) + "', 'fortran_order': False, 'shape': " + ShapeTuple(shape) +
                     ", }";
  size_t total = 10 + dict.size() + 1;  // magic(6) + version(2) + hlen(2) + dict + '\n'
  size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw NpyError(path + ": .npy header too long");
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(dict.size() & 0xff),
                           static_cast<unsigned char>(dict.size() >> 8)};
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw NpyError("cannot write " + path + ": " + std::strerror(errno));
  bool ok = std::fwrite(pre, 1, 10, f) == 10 && std::fwrite(dict.data(), 1, dict.size(), f) == dict.size() &&
            (nbytes == 0 || std::fwrite(data, 1, nbytes, f) == nbytes);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw NpyError("error writing " + path);
}

// ---- half precision helpers ----

inline float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/*! \brief float -> IEEE half, round to nearest even. */
inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (absx < 0x38800000u) {                                              // subnormal or zero in half
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t mant = (absx & 0x7fffff) | 0x800000;
    int shift = 126 - static_cast<int>(absx >> 23);  // 14 + (113 - e)
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ((absx - 0x38000000u) >> 13);
  uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return static_cast<uint16_t>(sign | r);
}

}  // namespace npy
}  // namespace ansor

#endif  // ANSOR_RUNNER_NPY_H_
