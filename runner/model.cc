// Model: load a convc library through the TVM runtime, read its signature, run `main`.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "convc_runner.h"

namespace convc {
namespace {

namespace ffi = tvm::ffi;

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR
const char kSignatureFunction[] = "convc_signature";
const char kLibraryFormat[] = "convc-library/1";
constexpr size_t kAlignment = 64;

// the last line of a TVM error: the "Check failed: ..." part, without the traceback
std::string ShortMessage(const std::exception& err) {
  const auto* ffi_err = dynamic_cast<const ffi::Error*>(&err);
  std::string text = ffi_err ? ffi_err->message() : err.what();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

DLDataType ToDLDataType(const std::string& dtype) {
  DtypeSize(dtype);  // throws for an unsupported dtype
  uint8_t bits = dtype == "float16" ? 16 : dtype == "float32" ? 32 : 64;
  return DLDataType{kDLFloat, bits, 1};
}

std::string FromDLDataType(DLDataType t) {
  if (t.code == kDLFloat && t.lanes == 1 && (t.bits == 16 || t.bits == 32 || t.bits == 64)) {
    return "float" + std::to_string(t.bits);
  }
  throw Error("the model returned an output of unsupported dtype (code " + std::to_string(t.code) + ", " +
              std::to_string(t.bits) + " bits)");
}

struct AlignedCPUAlloc {
  void AllocData(DLTensor* tensor) {
    size_t size = std::max<size_t>(ffi::GetDataSize(*tensor), 1);
    tensor->data = std::aligned_alloc(kAlignment, (size + kAlignment - 1) / kAlignment * kAlignment);
    if (tensor->data == nullptr) throw Error("out of memory allocating " + std::to_string(size) + " bytes");
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

ffi::Any Field(const ffi::Map<ffi::Any, ffi::Any>& object, const char* key) {
  auto value = object.Get(ffi::String(key));
  if (!value.has_value()) throw Error(std::string("the signature has no '") + key + "' field");
  return value.value();
}

std::vector<TensorSpec> ParseSpecs(const ffi::Any& list) {
  std::vector<TensorSpec> specs;
  for (const ffi::Any& item : list.cast<ffi::Array<ffi::Any>>()) {
    auto object = item.cast<ffi::Map<ffi::Any, ffi::Any>>();
    TensorSpec spec{std::string(Field(object, "name").cast<ffi::String>()), {},
                    std::string(Field(object, "dtype").cast<ffi::String>())};
    for (const ffi::Any& dim : Field(object, "shape").cast<ffi::Array<ffi::Any>>()) {
      spec.shape.push_back(dim.cast<int64_t>());
    }
    specs.push_back(spec);
  }
  return specs;
}

Signature ParseSignature(const std::string& json) {
  ffi::String error;
  ffi::Any value = ffi::json::Parse(json, &error);
  if (!error.empty()) throw Error("the signature is not JSON: " + std::string(error));
  auto object = value.cast<ffi::Map<ffi::Any, ffi::Any>>();
  std::string format(Field(object, "format").cast<ffi::String>());
  if (format != kLibraryFormat) {
    throw Error("library format '" + format + "', this runner reads '" + kLibraryFormat + "'");
  }
  return Signature{ParseSpecs(Field(object, "inputs")), ParseSpecs(Field(object, "outputs")),
                   std::string(Field(object, "convc_version").cast<ffi::String>()),
                   std::string(Field(object, "target").cast<ffi::String>())};
}

ffi::Function RequiredFunction(const ffi::Module& module, const char* name, const std::string& path) {
  ffi::Optional<ffi::Function> f = module->GetFunction(name, true);
  if (!f.has_value()) throw Error(path + ": not a convc library (it has no '" + name + "' function)");
  return f.value();
}

}  // namespace

struct Model::Impl {
  ffi::Module vm;
  ffi::Function main;
  Signature signature;

  std::vector<ffi::Tensor> Arguments(const std::map<std::string, HostTensor>& inputs) const {
    std::set<std::string> expected;
    std::string takes;
    for (const TensorSpec& spec : signature.inputs) {
      expected.insert(spec.name);
      takes += (takes.empty() ? "" : ", ") + ("'" + spec.name + "' ") + DescribeShape(spec.dtype, spec.shape);
    }
    for (const auto& [name, tensor] : inputs) {
      if (!expected.count(name)) throw Error("unknown input '" + name + "'; the model takes " + takes);
    }
    std::vector<ffi::Tensor> args;
    for (const TensorSpec& spec : signature.inputs) {
      auto it = inputs.find(spec.name);
      if (it == inputs.end()) {
        throw Error("missing input '" + spec.name + "' " + DescribeShape(spec.dtype, spec.shape));
      }
      const HostTensor& host = it->second;
      if (host.dtype != spec.dtype || host.shape != spec.shape) {
        throw Error("input '" + spec.name + "': expected " + DescribeShape(spec.dtype, spec.shape) + ", got " +
                    DescribeShape(host.dtype, host.shape));
      }
      ffi::Tensor tensor = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::ShapeView(spec.shape.data(), spec.shape.size()),
                                                    ToDLDataType(spec.dtype), DLDevice{kDLCPU, 0});
      std::memcpy(tensor.data_ptr(), host.data.data(), host.data.size());
      args.push_back(tensor);
    }
    return args;
  }

  std::vector<ffi::Tensor> Call(const std::vector<ffi::Tensor>& args) const {
    std::vector<ffi::AnyView> packed(args.begin(), args.end());
    ffi::Any result;
    try {
      main.CallPacked(packed.data(), static_cast<int32_t>(packed.size()), &result);
    } catch (const std::exception& err) {
      throw Error("running the model failed: " + ShortMessage(err));
    }
    if (auto one = result.try_cast<ffi::Tensor>()) return {one.value()};
    std::vector<ffi::Tensor> outputs;
    for (const ffi::Any& item : result.cast<ffi::Array<ffi::Any>>()) outputs.push_back(item.cast<ffi::Tensor>());
    return outputs;
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::Load(const std::string& path) {
  CheckLibraryTrailer(path);
  try {
    // an absolute path: dlopen searches the library path for a bare file name
    ffi::Module library = ffi::Module::LoadFromFile(std::filesystem::absolute(path).string());
    ffi::Module vm = RequiredFunction(library, "vm_load_executable", path)().cast<ffi::Module>();
    RequiredFunction(vm, "vm_initialization", path)(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    std::string json(RequiredFunction(vm, kSignatureFunction, path)().cast<ffi::String>());
    Signature signature = ParseSignature(json);
    ffi::Function main = RequiredFunction(vm, "main", path);
    return Model(std::make_unique<Impl>(Impl{vm, main, signature}));
  } catch (const Error& err) {
    throw Error(path + ": " + err.what());
  } catch (const std::exception& err) {
    throw Error(path + ": not a loadable convc library (" + ShortMessage(err) + ")");
  }
}

const Signature& Model::signature() const { return impl_->signature; }

std::vector<HostTensor> Model::Run(const std::map<std::string, HostTensor>& inputs) {
  std::vector<HostTensor> outputs;
  for (const ffi::Tensor& tensor : impl_->Call(impl_->Arguments(inputs))) {
    if (tensor.device().device_type != kDLCPU || !tensor.IsContiguous()) {
      throw Error("the model returned an output that is not a contiguous CPU tensor");
    }
    HostTensor host;
    host.dtype = FromDLDataType(tensor.dtype());
    ffi::ShapeView shape = tensor.shape();
    host.shape.assign(shape.begin(), shape.end());
    const auto* data = static_cast<const uint8_t*>(tensor.data_ptr()) + tensor.byte_offset();
    host.data.assign(data, data + ffi::GetDataSize(tensor));
    outputs.push_back(std::move(host));
  }
  return outputs;
}

std::vector<double> Model::Benchmark(const std::map<std::string, HostTensor>& inputs, int repeat) {
  std::vector<ffi::Tensor> args = impl_->Arguments(inputs);
  impl_->Call(args);
  std::vector<double> seconds;
  for (int i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    impl_->Call(args);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return seconds;
}

}  // namespace convc
