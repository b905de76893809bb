// GGUF as a checkpoint: every tensor of a validated GGUF file (formats/gguf_file.h) in the
// file's order, with the numpy/torch shape (ggml's ne reversed). Plain tensors (F32, F16,
// BF16, F64, I8-I64) are views into the mapping; a tensor in a ggml block type is decoded to
// float32 when it is asked for (the codec of include/wq/codec/ggml_*.h, as ggml decodes it)
// and held until released.
#pragma once

#include <memory>

#include "formats/gguf_file.h"
#include "io/mapped_file.h"
#include "wq/checkpoint.h"

namespace wq::detail {

/// Opens a mapped GGUF file (format "gguf"). Throws like GgufFile.
std::unique_ptr<CheckpointReader> open_gguf(MappedFile file);

/// The GGUF file behind a reader that open_gguf() made; nullptr for any other reader.
const GgufFile* gguf_file_of(const CheckpointReader& reader);

/// Whether the file at `path` starts with the GGUF magic (false when it cannot be read).
bool starts_with_gguf_magic(const std::string& path);

/// The wq dtype of a plain ggml type; nullopt for block types.
std::optional<DType> dtype_of_plain_ggml_type(codec::ggml::Type type);

}  // namespace wq::detail
