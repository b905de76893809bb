// PyTorch checkpoints (torch.save): the zip format (default since 1.6) and the legacy one.
//
// Read without Python and without executing anything: data.pkl goes through the restricted
// unpickler, storages are looked up by key (shared storages are read once per use), views are
// materialised from their base storage with their offset and strides, and nested state dicts
// are flattened with dotted names.
#pragma once

#include <memory>
#include <string>

#include "wq/checkpoint.h"

namespace wq::detail {

/// A torch zip checkpoint (starts with "PK\x03\x04" and holds <prefix>/data.pkl).
std::unique_ptr<CheckpointReader> open_torch_zip(const std::string& path, const ReadOptions& options);

/// A legacy torch checkpoint (starts with the pickled magic number 0x1950a86a20f9469cfc6c).
std::unique_ptr<CheckpointReader> open_torch_legacy(const std::string& path, const ReadOptions& options);

/// True when the first bytes are the legacy format's magic pickle.
bool is_torch_legacy(const std::byte* data, std::size_t size);

}  // namespace wq::detail
