#include "pipeline/output_sink.h"

#include <map>

#include "container/container_checkpoint.h"
#include "formats/gguf_checkpoint.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors_writer.h"
#include "wq/error.h"
#include "wq/version.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

class ContainerSink final : public OutputSink {
 public:
  ContainerSink(AtomicFile& out, const ContainerMetadata& metadata, const std::vector<PartLayout>& parts)
      : writer_(out, parts, header(metadata)) {}

  void append(std::size_t, const std::byte* data, std::uint64_t bytes) override { writer_.append(data, bytes); }

  void finish(const ContainerMetadata& metadata) override {
    writer_.rewrite_metadata(header(metadata));  // the checksums, in placeholders of the same length
    writer_.finish();
  }

  std::uint64_t total_bytes() const override { return writer_.total_bytes(); }

 private:
  static Metadata header(const ContainerMetadata& metadata) {
    return {{"format", "pt"}, {"wq", metadata_json(metadata)}};
  }

  SafetensorsWriter writer_;
};

// llama.cpp's LLAMA_FTYPE_MOSTLY_* for a file whose weights are mostly of one type.
std::optional<std::uint32_t> llama_file_type(ggml::Type type) {
  switch (type) {
    case ggml::Type::kF32: return 0;
    case ggml::Type::kF16: return 1;
    case ggml::Type::kQ4_0: return 2;
    case ggml::Type::kQ4_1: return 3;
    case ggml::Type::kQ8_0: return 7;
    case ggml::Type::kQ5_0: return 8;
    case ggml::Type::kQ5_1: return 9;
    case ggml::Type::kQ2_K: return 10;
    case ggml::Type::kQ3_K: return 11;  // Q3_K_S: every weight Q3_K
    case ggml::Type::kQ4_K: return 14;  // Q4_K_S
    case ggml::Type::kQ5_K: return 16;  // Q5_K_S
    case ggml::Type::kQ6_K: return 18;
    case ggml::Type::kBF16: return 32;
    default: return std::nullopt;
  }
}

class GgufSink final : public OutputSink {
 public:
  GgufSink(AtomicFile& out, const ContainerMetadata& metadata, const CheckpointReader& reader,
           const QuantizeOptions& options)
      : writer_(out, gguf_metadata(metadata, reader, options), plans(metadata), options.gguf_long_names) {}

  void append(std::size_t, const std::byte* data, std::uint64_t bytes) override { writer_.append(data, bytes); }
  void finish(const ContainerMetadata&) override { writer_.finish(); }
  std::uint64_t total_bytes() const override { return writer_.total_bytes(); }

 private:
  static std::vector<GgufTensorPlan> plans(const ContainerMetadata& metadata) {
    std::vector<GgufTensorPlan> out;
    for (const ContainerTensor& t : metadata.tensors) {
      const std::optional<ggml::Type> type = gguf_type_of(t);
      if (!type) {
        throw Error(ErrorCode::kUsage, "tensor '" + t.name + "' (" + std::string(dtype_name(t.dtype)) + ", " +
                                           std::string(encoding_name(t.encoding)) +
                                           ") has no GGUF type: GGUF holds ggml types, float casts and "
                                           "F32/F16/BF16/F64/I8-I64 tensors",
                    {{"ggml_type", ""}});
      }
      out.push_back(GgufTensorPlan{t.name, ne_of_shape(t.shape), *type, t.stored_bytes});
    }
    return out;
  }

  // A GGUF input's pairs (or those a container made from one carries) are kept in their
  // order; others get the spec's minimal set. The data is laid out at the writer's alignment,
  // so a source's general.alignment is rewritten to it.
  static GgufMetadata gguf_metadata(const ContainerMetadata& metadata, const CheckpointReader& reader,
                                    const QuantizeOptions& options) {
    GgufMetadata out;
    if (const GgufKvs* source = gguf_kvs_of(reader)) {
      for (const GgufKv& kv : source->pairs()) out.add_copied(kv);
      if (out.contains("general.alignment")) out.set_u32("general.alignment", GgufWriter::kAlignment);
    }
    // The most common type among the weights names the file's type, as llama.cpp reports it.
    std::map<ggml::Type, std::uint64_t> weights;
    bool quantized = false;
    for (const ContainerTensor& t : metadata.tensors) {
      if (t.encoding == Encoding::kGgml) quantized = true;
      if (t.encoding != Encoding::kRaw && t.shape.size() >= 2) weights[*gguf_type_of(t)] += element_count(t.shape);
    }
    const std::uint32_t* preset = options.gguf_file_type ? &*options.gguf_file_type : nullptr;
    std::optional<std::uint32_t> file_type;
    if (preset != nullptr) {
      file_type = *preset;
    } else if (!weights.empty()) {
      auto most = weights.begin();
      for (auto it = weights.begin(); it != weights.end(); ++it) {
        if (it->second > most->second) most = it;
      }
      file_type = llama_file_type(most->first);
    }
    if (file_type) out.set_u32("general.file_type", *file_type);
    if (quantized) out.set_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
    out.set_string("general.quantized_by", std::string("wq-gpu ") + kVersion);
    return out;
  }

  GgufWriter writer_;
};

// compressed-tensors output: a plain safetensors file of the parts, as transformers saves one
// (metadata "format": "pt"); vLLM reads config.json for the scheme.
class SafetensorsSink final : public OutputSink {
 public:
  SafetensorsSink(AtomicFile& out, const std::vector<PartLayout>& parts) : writer_(out, parts, {{"format", "pt"}}) {}

  void append(std::size_t, const std::byte* data, std::uint64_t bytes) override { writer_.append(data, bytes); }
  void finish(const ContainerMetadata&) override { writer_.finish(); }
  std::uint64_t total_bytes() const override { return writer_.total_bytes(); }

 private:
  SafetensorsWriter writer_;
};

}  // namespace

std::optional<ggml::Type> gguf_type_of(const ContainerTensor& t) {
  switch (t.encoding) {
    case Encoding::kGgml: return t.ggml_type;
    case Encoding::kCast:
      return t.data_dtype == DType::kF16    ? std::optional(ggml::Type::kF16)
             : t.data_dtype == DType::kBF16 ? std::optional(ggml::Type::kBF16)
             : t.data_dtype == DType::kF32  ? std::optional(ggml::Type::kF32)
                                            : std::nullopt;
    case Encoding::kRaw:
      switch (t.dtype) {
        case DType::kF32: return ggml::Type::kF32;
        case DType::kF16: return ggml::Type::kF16;
        case DType::kBF16: return ggml::Type::kBF16;
        case DType::kF64: return ggml::Type::kF64;
        case DType::kI8: return ggml::Type::kI8;
        case DType::kI16: return ggml::Type::kI16;
        case DType::kI32: return ggml::Type::kI32;
        case DType::kI64: return ggml::Type::kI64;
        default: return std::nullopt;  // U8 and BOOL: GGUF has no such type
      }
    case Encoding::kAffine:
    case Encoding::kSymmetric:
    case Encoding::kPackQuantized: return std::nullopt;
  }
  return std::nullopt;
}

std::unique_ptr<OutputSink> make_container_sink(AtomicFile& out, const ContainerMetadata& metadata,
                                                const std::vector<PartLayout>& parts) {
  return std::make_unique<ContainerSink>(out, metadata, parts);
}

std::unique_ptr<OutputSink> make_safetensors_sink(AtomicFile& out, const std::vector<PartLayout>& parts) {
  return std::make_unique<SafetensorsSink>(out, parts);
}

std::unique_ptr<OutputSink> make_gguf_sink(AtomicFile& out, const ContainerMetadata& metadata,
                                           const CheckpointReader& reader, const QuantizeOptions& options) {
  return std::make_unique<GgufSink>(out, metadata, reader, options);
}

}  // namespace wq::detail
