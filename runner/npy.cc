// .npy reading and writing (NumPy's format 1.0-3.0) for little-endian float arrays in C order.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "convc_runner.h"

namespace convc {
namespace {

const char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

// NumPy dtype name <-> little-endian descr and element size
struct DtypeInfo {
  const char* descr;
  size_t size;
};
const std::map<std::string, DtypeInfo>& Dtypes() {
  static const std::map<std::string, DtypeInfo> dtypes = {
      {"float16", {"<f2", 2}}, {"float32", {"<f4", 4}}, {"float64", {"<f8", 8}}};
  return dtypes;
}

std::string SupportedDtypes() {
  std::string names;
  for (const auto& [name, info] : Dtypes()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

// the value text after 'key': in the header dict, up to the next top-level ',' or '}'
std::string HeaderField(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw Error(path + ": .npy header has no '" + key + "' field");
  size_t colon = header.find(':', at);
  size_t end = colon + 1;
  int depth = 0;
  for (; end < header.size(); ++end) {
    char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  std::string value = header.substr(colon + 1, end - colon - 1);
  size_t first = value.find_first_not_of(" '\""), last = value.find_last_not_of(" '\"");
  return first == std::string::npos ? "" : value.substr(first, last - first + 1);
}

std::vector<int64_t> ParseShape(const std::string& text, const std::string& path) {
  if (text.empty() || text.front() != '(' || text.back() != ')') {
    throw Error(path + ": .npy shape " + text + " is not a tuple");
  }
  std::vector<int64_t> shape;
  std::stringstream items(text.substr(1, text.size() - 2));
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    try {
      size_t used = 0;
      long long dim = std::stoll(item, &used);
      if (dim < 0 || item.find_first_not_of(' ', used) != std::string::npos) throw std::invalid_argument(item);
      shape.push_back(dim);
    } catch (const std::logic_error&) {
      throw Error(path + ": .npy shape " + text + " has a bad dimension '" + item + "'");
    }
  }
  return shape;
}

std::string DtypeFromDescr(const std::string& descr, const std::string& path) {
  for (const auto& [name, info] : Dtypes()) {
    if (descr == info.descr) return name;
  }
  throw Error(path + ": unsupported .npy dtype '" + descr + "'; supported: little-endian " +
              SupportedDtypes());
}

}  // namespace

size_t DtypeSize(const std::string& dtype) {
  auto it = Dtypes().find(dtype);
  if (it == Dtypes().end()) throw Error("unsupported dtype " + dtype + "; supported: " + SupportedDtypes());
  return it->second.size;
}

int64_t HostTensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string DescribeShape(const std::string& dtype, const std::vector<int64_t>& shape) {
  std::string text = dtype + "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

HostTensor ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < kMagicSize + 4 || bytes.compare(0, kMagicSize, kMagic, kMagicSize) != 0) {
    throw Error(path + ": not a .npy file (no NumPy magic)");
  }
  int major = static_cast<uint8_t>(bytes[kMagicSize]);
  size_t length_size = major == 1 ? 2 : 4;
  if (major < 1 || major > 3) throw Error(path + ": unsupported .npy format version " + std::to_string(major));
  size_t header_size = 0;
  for (size_t i = 0; i < length_size; ++i) {
    header_size |= size_t(static_cast<uint8_t>(bytes[kMagicSize + 2 + i])) << (8 * i);
  }
  size_t data_start = kMagicSize + 2 + length_size + header_size;
  if (data_start > bytes.size()) throw Error(path + ": truncated .npy header");
  std::string header = bytes.substr(kMagicSize + 2 + length_size, header_size);

  HostTensor tensor;
  tensor.dtype = DtypeFromDescr(HeaderField(header, "descr", path), path);
  if (HeaderField(header, "fortran_order", path) != "False") {
    throw Error(path + ": Fortran-ordered .npy arrays are not supported; save a C-ordered array");
  }
  tensor.shape = ParseShape(HeaderField(header, "shape", path), path);
  size_t expected = size_t(tensor.NumElements()) * DtypeSize(tensor.dtype);
  if (bytes.size() - data_start != expected) {
    throw Error(path + ": .npy data is " + std::to_string(bytes.size() - data_start) + " bytes, expected " +
                std::to_string(expected) + " for " + DescribeShape(tensor.dtype, tensor.shape));
  }
  tensor.data.assign(bytes.begin() + data_start, bytes.end());
  return tensor;
}

void WriteNpy(const std::string& path, const HostTensor& tensor) {
  std::string shape = "(";
  for (int64_t d : tensor.shape) shape += std::to_string(d) + ",";
  if (tensor.shape.size() > 1) shape.pop_back();
  shape += ")";
  std::string header = std::string("{'descr': '") + Dtypes().at(tensor.dtype).descr +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t unpadded = kMagicSize + 2 + 2 + header.size() + 1;  // + the closing newline
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";

  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot write the file");
    out.write(kMagic, kMagicSize);
    const char version[2] = {1, 0};
    out.write(version, 2);
    const char length[2] = {char(header.size() & 0xff), char(header.size() >> 8)};
    out.write(length, 2);
    out << header;
    out.write(reinterpret_cast<const char*>(tensor.data.data()), std::streamsize(tensor.data.size()));
    if (!out.flush()) {
      std::remove(tmp.c_str());
      throw Error(path + ": writing failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot move the written file into place");
  }
}

}  // namespace convc
