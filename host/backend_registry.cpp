// Chooses a backend at run time. The only host file that knows whether CUDA was compiled in.
#include <string>

#include "cpu/cpu_backend.h"
#include "wq/backend.h"
#include "wq/error.h"

#if WQ_HAVE_CUDA
#include "cuda_backend.h"
#include "device_probe.h"
#endif

namespace wq {

bool cuda_compiled() noexcept { return WQ_HAVE_CUDA != 0; }

int cuda_device_count(std::string* reason) noexcept {
#if WQ_HAVE_CUDA
  return cuda::device_count(reason);
#else
  if (reason != nullptr) *reason = "this build of libwqcuda has no CUDA support";
  return 0;
#endif
}

std::string_view backend_kind_name(BackendKind kind) noexcept {
  switch (kind) {
    case BackendKind::kAuto: return "auto";
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "?";
}

namespace {

// The CUDA backend on the requested device, or Error(kUnsupported) saying why there is none.
std::unique_ptr<Backend> make_cuda(const BackendOptions& options) {
#if WQ_HAVE_CUDA
  return cuda::make_cuda_backend(options.device, options.gpu_memory, options.threads);
#else
  (void)options;
  throw Error(ErrorCode::kUnsupported, "this build of libwqcuda has no CUDA support");
#endif
}

}  // namespace

BackendSelection make_backend(const BackendOptions& options) {
  BackendSelection selection;
  switch (options.kind) {
    case BackendKind::kCpu:
      selection.backend = detail::make_cpu_backend(options.threads);
      return selection;
    case BackendKind::kCuda:
      try {
        selection.backend = make_cuda(options);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kUnsupported) throw;
        throw Error(ErrorCode::kUnsupported, std::string("the CUDA backend: ") + e.what(), {{"backend_cpu", ""}});
      }
      return selection;
    case BackendKind::kAuto:
      try {
        selection.backend = make_cuda(options);
        return selection;
      } catch (const Error& e) {
        // No device, no CUDA in this build, or the device refused: the CPU does the work.
        if (e.code() == ErrorCode::kUsage) throw;  // a bad --gpu-memory is the user's to fix
        selection.notice = std::string("using the CPU backend: ") + e.what();
      }
      selection.backend = detail::make_cpu_backend(options.threads);
      return selection;
  }
  throw Error(ErrorCode::kInternal, "unknown backend kind");
}

}  // namespace wq
