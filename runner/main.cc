// convc-run: run a convc library on .npy inputs from the command line, without Python.
//
//   convc-run model.so --input input=x.npy [--input NAME=FILE.npy ...]
//             [--output-dir DIR] [--bench N] [--signature]
//
// Outputs are written as DIR/<output name>.npy. Exit status: 0 on success, 1 when the
// library or an input is wrong (the message says which and why), 2 on a usage error.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "convc_runner.h"

namespace {

const char kUsage[] =
    "usage: convc-run LIBRARY.so --input NAME=FILE.npy [--input ...] [--output-dir DIR] [--bench N] "
    "[--signature]\n";

struct Options {
  std::string library;
  std::map<std::string, std::string> inputs;  // name -> .npy path
  std::string output_dir;
  int bench = 0;
  bool signature = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--input") {
      std::string spec = value();
      size_t eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("--input " + spec + ": expected NAME=FILE.npy");
      options.inputs[spec.substr(0, eq)] = spec.substr(eq + 1);
    } else if (arg == "--output-dir") {
      options.output_dir = value();
    } else if (arg == "--bench") {
      std::string n = value();
      char* end = nullptr;
      long count = std::strtol(n.c_str(), &end, 10);
      if (*end != '\0' || count < 1) throw UsageError("--bench " + n + ": expected a positive run count");
      options.bench = static_cast<int>(count);
    } else if (arg == "--signature") {
      options.signature = true;
    } else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option " + arg);
    } else if (options.library.empty()) {
      options.library = arg;
    } else {
      throw UsageError("unexpected argument " + arg);
    }
  }
  if (options.library.empty()) throw UsageError("no library given");
  return options;
}

void PrintSignature(const convc::Signature& signature) {
  std::cout << "convc " << signature.convc_version << ", target " << signature.target << "\n";
  for (const auto& spec : signature.inputs) {
    std::cout << "input  " << spec.name << " " << convc::DescribeShape(spec.dtype, spec.shape) << "\n";
  }
  for (const auto& spec : signature.outputs) {
    std::cout << "output " << spec.name << " " << convc::DescribeShape(spec.dtype, spec.shape) << "\n";
  }
}

int Run(const Options& options) {
  convc::Model model = convc::Model::Load(options.library);
  if (options.signature) PrintSignature(model.signature());
  if (options.inputs.empty() && options.signature) return 0;

  std::map<std::string, convc::HostTensor> inputs;
  for (const auto& [name, path] : options.inputs) {
    try {
      inputs[name] = convc::ReadNpy(path);
    } catch (const convc::Error& err) {
      throw convc::Error("input '" + name + "': " + err.what());
    }
  }
  std::vector<convc::HostTensor> outputs = model.Run(inputs);
  const auto& specs = model.signature().outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string name = i < specs.size() ? specs[i].name : "output" + std::to_string(i);
    if (options.output_dir.empty()) {
      std::cout << name << ": " << convc::DescribeShape(outputs[i].dtype, outputs[i].shape) << "\n";
    } else {
      std::string file = name;
      std::replace(file.begin(), file.end(), '/', '_');
      std::string path = options.output_dir + "/" + file + ".npy";
      convc::WriteNpy(path, outputs[i]);
      std::cout << "wrote " << path << "\n";
    }
  }
  if (options.bench > 0) {
    std::vector<double> times = model.Benchmark(inputs, options.bench);
    std::sort(times.begin(), times.end());
    std::printf("latency over %d runs: median %.3f ms, min %.3f ms\n", options.bench,
                times[times.size() / 2] * 1e3, times.front() * 1e3);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = ParseOptions(argc, argv);
  } catch (const UsageError& err) {
    std::cerr << "convc-run: " << err.what() << "\n" << kUsage;
    return 2;
  }
  try {
    return Run(options);
  } catch (const convc::Error& err) {
    std::cerr << "convc-run: error: " << err.what() << "\n";
    return 1;
  }
}
