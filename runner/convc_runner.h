// convc_runner: run a convc-compiled model library from C++ through the TVM runtime.
//
//   convc::Model model = convc::Model::Load("model.so");      // checks the convc trailer
//   for (const convc::TensorSpec& in : model.signature().inputs) ...
//   std::vector<convc::HostTensor> outs = model.Run({{"input", convc::ReadNpy("x.npy")}});
//   convc::WriteNpy("out.npy", outs[0]);
//
// A convc library is a TVM shared object (a Relax VM executable with its kernels and
// weights) followed by a trailer: the magic bytes "\0CONVC-LIBRARY-SHA256\0" and the
// SHA-256 of everything before them. Model::Load checks the trailer before handing the
// file to the dynamic loader, as convc.load does in Python, so a damaged or foreign file
// is refused instead of being mapped into the process. The library's VM function
// "convc_signature" returns the input/output names, shapes and dtypes as JSON; Run checks
// every input against it. Every failure is a convc::Error with a message naming the input,
// the file or the step that failed.
#ifndef CONVC_RUNNER_H_
#define CONVC_RUNNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace convc {

/*! \brief What a user did wrong (bad file, wrong input) or what failed at run time. */
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/*! \brief A dense, C-ordered host array: dtype is a NumPy name ("float32", "float64", "float16"). */
struct HostTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // little-endian element bytes, C order

  int64_t NumElements() const;
};

/*! \brief Bytes per element of a supported dtype; throws Error for any other dtype. */
size_t DtypeSize(const std::string& dtype);

/*! \brief "float32[1, 3, 8, 8]": a dtype and shape as messages show them. */
std::string DescribeShape(const std::string& dtype, const std::vector<int64_t>& shape);

/*! \brief Read a .npy file (format 1.x-3.x, little-endian float16/32/64, C order). */
HostTensor ReadNpy(const std::string& path);

/*! \brief Write a .npy file (format 1.0) atomically: a temporary file, then a rename. */
void WriteNpy(const std::string& path, const HostTensor& tensor);

/*! \brief One model input or output as recorded in the library. */
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
};

/*! \brief The library's signature (its "convc_signature" VM function). */
struct Signature {
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::string convc_version;
  std::string target;
};

/*! \brief Throw Error unless `path` ends with a valid convc trailer (magic + SHA-256). */
void CheckLibraryTrailer(const std::string& path);

/*! \brief A loaded convc library on the CPU. Not thread-safe: one Run at a time. */
class Model {
 public:
  /*! \brief Check the trailer, load the library, start its VM and read its signature. */
  static Model Load(const std::string& path);

  const Signature& signature() const;

  /*! \brief Run on named inputs (checked against the signature); outputs in signature order. */
  std::vector<HostTensor> Run(const std::map<std::string, HostTensor>& inputs);

  /*! \brief Seconds per run for `repeat` runs of the same inputs, after one warm-up run. */
  std::vector<double> Benchmark(const std::map<std::string, HostTensor>& inputs, int repeat);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace convc

#endif  // CONVC_RUNNER_H_
