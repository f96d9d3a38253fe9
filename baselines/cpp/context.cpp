// The few libtorch settings tch does not bind: deterministic algorithms, the float32 precision of
// CUDA matmuls and convolutions, and bfloat16 autocast per device type (tch binds CUDA's float16
// autocast only). C entry points for baselines/src/numerics.rs; those that can fail return 0, or
// 1 with the exception's text in `error` (NUL-terminated, truncated to its size).
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
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

// Autocast on this thread for the device type of `cuda` (1: CUDA, 0: CPU): `on` enables it with
// bfloat16 as the lower precision, or disables it. Returns the previous state in `*was_on` and
// `*was_bf16` so the caller can restore it. Autocast state is thread-local, as in PyTorch.
int gh_autocast_set(int cuda, int on, int* was_on, int* was_bf16, char* error, size_t size) {
  try {
    auto type = cuda != 0 ? at::kCUDA : at::kCPU;
    *was_on = at::autocast::is_autocast_enabled(type) ? 1 : 0;
    *was_bf16 = at::autocast::get_autocast_dtype(type) == at::kBFloat16 ? 1 : 0;
    if (on != 0) at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, on != 0);
    // Casts cached within one enabled region must not outlive it (PyTorch clears the cache when
    // the outermost autocast region exits).
    if (on == 0) at::autocast::clear_cache();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, size);
  }
}

// Restores a state returned by gh_autocast_set (the lower-precision dtype: bfloat16 or the
// device type's default, float16 on CUDA and bfloat16 on the CPU).
int gh_autocast_restore(int cuda, int was_on, int was_bf16, char* error, size_t size) {
  try {
    auto type = cuda != 0 ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(type, was_bf16 != 0 ? at::kBFloat16 : (cuda != 0 ? at::kHalf : at::kBFloat16));
    at::autocast::set_autocast_enabled(type, was_on != 0);
    if (was_on == 0) at::autocast::clear_cache();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, size);
  }
}

int gh_autocast_enabled(int cuda) { return at::autocast::is_autocast_enabled(cuda != 0 ? at::kCUDA : at::kCPU) ? 1 : 0; }
}
