// Chooses a backend at run time. The only host file that knows whether CUDA was compiled in.
#include <string>

#include "cpu/cpu_backend.h"
#include "wq/backend.h"
#include "wq/error.h"

#if WQ_HAVE_CUDA
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

// Why the CUDA backend cannot run here, or an empty string when it can.
std::string cuda_unavailable_reason(int device) {
  std::string reason;
  const int count = cuda_device_count(&reason);
  if (count == 0) return reason;
  if (device < 0 || device >= count) {
    return "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
           " present)";
  }
  // The device is real, but this version has no CUDA kernels yet: say so rather than pretend.
  return "the CUDA backend's kernels are not part of this version of wq yet";
}

}  // namespace

BackendSelection make_backend(const BackendOptions& options) {
  BackendSelection selection;
  switch (options.kind) {
    case BackendKind::kCpu:
      selection.backend = detail::make_cpu_backend(options.threads);
      return selection;
    case BackendKind::kCuda:
      throw Error(ErrorCode::kUnsupported,
                  "--backend cuda: " + cuda_unavailable_reason(options.device) +
                      " (use --backend cpu or auto)");
    case BackendKind::kAuto:
      selection.notice = "using the CPU backend: " + cuda_unavailable_reason(options.device);
      selection.backend = detail::make_cpu_backend(options.threads);
      return selection;
  }
  throw Error(ErrorCode::kInternal, "unknown backend kind");
}

}  // namespace wq
