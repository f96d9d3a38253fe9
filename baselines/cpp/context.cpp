// The few libtorch global settings tch does not bind: deterministic algorithms and the float32
// precision of CUDA matmuls and convolutions. C entry points for baselines/src/device.rs; each
// returns 0, or 1 with the exception's text in `error` (NUL-terminated, truncated to its size).
#include <ATen/Context.h>
#include <cstring>
#include <exception>
#include <string>

namespace {
int fail(const std::exception& e, char* error, size_t size) {
  if (size > 0) {
    std::strncpy(error, e.what(), size - 1);
    error[size - 1] = '\0';
  }
  return 1;
}
}  // namespace

extern "C" {

// Deterministic algorithms (an error where an operation has none), deterministic cuDNN,
// cuDNN benchmark mode off; or the defaults back (benchmark left to the caller).
int gh_set_deterministic(int on, char* error, size_t size) {
  try {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(on != 0, false);
    ctx.setDeterministicCuDNN(on != 0);
    if (on != 0) ctx.setBenchmarkCuDNN(false);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, size);
  }
}

int gh_deterministic_algorithms() { return at::globalContext().deterministicAlgorithms() ? 1 : 0; }

int gh_benchmark_cudnn() { return at::globalContext().benchmarkCuDNN() ? 1 : 0; }

// "ieee" or "tf32" for CUDA matmuls and convolutions.
int gh_set_cuda_fp32_precision(const char* precision, char* error, size_t size) {
  try {
    auto& ctx = at::globalContext();
    auto p = at::str2precision(precision);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, p);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, p);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, size);
  }
}

// The precisions in force, as "matmul=<p> conv=<p>" into `out`.
void gh_cuda_fp32_precision(char* out, size_t size) {
  auto& ctx = at::globalContext();
  std::string s = "matmul=" + at::precision2str(ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL)) +
                  " conv=" + at::precision2str(ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV));
  if (size > 0) {
    std::strncpy(out, s.c_str(), size - 1);
    out[size - 1] = '\0';
  }
}
}
