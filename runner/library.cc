// The convc trailer check: the same rule as convc.runtime._check_trailer in Python.
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "convc_runner.h"
#include "sha256.h"

namespace convc {
namespace {

// "\0CONVC-LIBRARY-SHA256\0", convc.runtime.TRAILER_MAGIC
const std::string kTrailerMagic("\0CONVC-LIBRARY-SHA256\0", 22);
constexpr size_t kDigestSize = 32;

}  // namespace

void CheckLibraryTrailer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": no such library file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t trailer_size = kTrailerMagic.size() + kDigestSize;
  if (bytes.size() < trailer_size ||
      !std::equal(kTrailerMagic.begin(), kTrailerMagic.end(), bytes.end() - trailer_size,
                  [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; })) {
    throw Error(path + ": not a convc library (no convc trailer; was it written by "
                "CompiledModel.export_library?)");
  }
  std::array<uint8_t, kDigestSize> digest = Sha256(bytes.data(), bytes.size() - trailer_size);
  if (!std::equal(digest.begin(), digest.end(), bytes.end() - kDigestSize)) {
    throw Error(path + ": the library is corrupt (its checksum does not match)");
  }
}

}  // namespace convc
