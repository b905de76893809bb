// A WQ container read as the checkpoint it encodes, so that it can be quantized into another
// format: above all into GGUF, where tensors stored as ggml blocks are copied without a second
// rounding (docs/container-format.md: WQ and GGUF convert into each other without loss).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "formats/gguf_file.h"
#include "wq/checkpoint.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/container.h"

namespace wq::detail {

/// The container at `path` (Error(kBadFormat) when it is not one) as a CheckpointReader of
/// format "wq": its logical tensors in its order. Raw tensors, casts (as their stored F16/BF16)
/// and float ggml types read in place; quantized ones (ggml blocks, wq's codes) decode to their
/// original dtype on tensor(), and stored_quantized_as() says what they are stored as, so that
/// quantizing them again needs allow_requantize unless their blocks are copied. Every tensor's
/// checksum is checked before its bytes are used.
std::unique_ptr<CheckpointReader> open_container_checkpoint(const std::string& path);

/// The ggml blocks of `type` that `reader` stores tensor `index` as, verified: a quantized GGUF
/// tensor of that type, or a container tensor of encoding ggml in it (open_container_checkpoint()).
/// Empty for any other tensor or reader.
std::span<const std::byte> stored_ggml_blocks(const CheckpointReader& reader, std::size_t index,
                                              codec::ggml::Type type);

/// The GGUF metadata pairs behind `reader`: a GGUF file's own, or those a container made from
/// one carries (open_container_checkpoint()); nullptr for any other reader.
const GgufKvs* gguf_kvs_of(const CheckpointReader& reader);

/// Part `part` (ContainerTensor::parts order) of container tensor `index`, unverified
/// (container_reader.cpp).
std::span<const std::byte> stored_part(const ContainerReader& reader, std::size_t index, std::size_t part);

/// The GGUF metadata pairs a container carries, parsed (and checked) when it was opened; empty
/// when its source was not a GGUF (container_reader.cpp). They view the reader's copy.
const GgufKvs& stored_gguf_kvs(const ContainerReader& reader);

}  // namespace wq::detail
