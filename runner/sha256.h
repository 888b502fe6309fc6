// SHA-256 (FIPS 180-4), enough to verify a convc library's trailer without OpenSSL.
#ifndef CONVC_SHA256_H_
#define CONVC_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace convc {

/*! \brief The 32-byte SHA-256 digest of `size` bytes at `data`. */
std::array<uint8_t, 32> Sha256(const uint8_t* data, size_t size);

}  // namespace convc

#endif  // CONVC_SHA256_H_
