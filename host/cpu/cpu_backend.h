// The CPU backend: the codec's arithmetic scheduled over a thread pool.
#pragma once

#include <memory>

#include "wq/backend.h"

namespace wq::detail {

/// `threads` counts every worker including the caller; 0 = every core.
std::unique_ptr<Backend> make_cpu_backend(unsigned threads);

}  // namespace wq::detail
