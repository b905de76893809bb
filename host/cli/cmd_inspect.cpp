// wq-gpu inspect FILE [--json]
#include <memory>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/report_table.h"
#include "core/json_text.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq::cli {
namespace {

struct InspectFlags {
  std::string input;
  bool json = false;
  std::uint64_t max_view_expansion = ReadOptions::kDefaultMaxExpandedViewBytes;
};

struct Row {
  std::string name, dtype, shape, encoding, layout;
  int bits = 0;
  std::uint64_t groups = 0, bytes = 0;
};

std::string shape_text(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

int run_inspect(const InspectFlags& f) {
  std::vector<Row> rows;
  std::vector<MetadataEntry> metadata;  // a GGUF's pairs, or those its container carries
  nlohmann::ordered_json j;
  j["file"] = f.input;
  if (is_wq_container(f.input)) {
    const std::unique_ptr<ContainerReader> c = ContainerReader::open(f.input);
    j["format"] = "wq";
    j["bytes"] = c->file_bytes();
    j["producer"] = c->producer();
    j["source"] = {{"file", c->source().file}, {"format", c->source().format}, {"bytes", c->source().bytes}};
    metadata = c->gguf_metadata_entries();
    for (const ContainerTensor& t : c->tensors()) {
      Row r{t.name, std::string(dtype_name(t.dtype)), shape_text(t.shape), std::string(encoding_name(t.encoding)), "", t.bits, 0, t.stored_bytes};
      if (has_codes(t.encoding)) {
        r.groups = stored_group_geometry(t.shape, t.group_size, t.bits).groups;
        r.layout = granularity_text(t.group_size, t.shape) + (t.scale_dtype == ScaleDType::kF16 ? ", f16 scales" : "") +
                   (t.encoding == Encoding::kAffine && t.range != "minmax" ? ", " + t.range + " ranges" : "");
      } else if (t.encoding == Encoding::kCast) {
        r.layout = std::string(dtype_name(t.data_dtype));
      } else if (t.encoding == Encoding::kGgml) {
        r.layout = std::string(codec::ggml::type_name(t.ggml_type)) + (t.range.empty() ? "" : " " + t.range);
        r.groups = element_count(t.shape) / codec::ggml::layout_of(t.ggml_type).block_elements;
      }
      rows.push_back(std::move(r));
    }
  } else {
    ReadOptions read;
    read.max_expanded_view_bytes = f.max_view_expansion;
    const std::unique_ptr<CheckpointReader> c = open_checkpoint(f.input, read);
    j["format"] = c->format();
    j["bytes"] = c->file_bytes();
    metadata = c->metadata();
    for (std::size_t i = 0; i < c->tensors().size(); ++i) {
      const TensorInfo& t = c->tensors()[i];
      Row r{t.name, std::string(dtype_name(t.dtype)), shape_text(t.shape), "raw", "", 0, 0,
            element_count(t.shape) * dtype_size(t.dtype)};
      // A GGUF's quantized tensor reads as float32; the file holds its blocks.
      const std::string_view stored = c->stored_quantized_as(i);
      for (codec::ggml::Type type : codec::ggml::kQuantizedTypes) {
        if (stored != codec::ggml::type_name(type)) continue;
        const codec::ggml::TypeLayout layout = codec::ggml::layout_of(type);
        r.encoding = "ggml";
        r.layout = std::string(stored);
        r.groups = element_count(t.shape) / layout.block_elements;
        r.bytes = r.groups * layout.block_bytes;
      }
      rows.push_back(std::move(r));
    }
  }
  if (f.json) {
    if (!metadata.empty()) {
      nlohmann::ordered_json pairs = nlohmann::ordered_json::array();
      for (const MetadataEntry& m : metadata) pairs.push_back({{"key", m.key}, {"type", m.type}, {"value", m.value}});
      j["metadata"] = std::move(pairs);
    }
    nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
    for (const Row& r : rows) {
      nlohmann::ordered_json e = {{"name", r.name}, {"dtype", r.dtype}, {"shape", nlohmann::ordered_json::parse(r.shape)},
                                  {"encoding", r.encoding}};
      if (r.encoding == "affine" || r.encoding == "symmetric") {
        e["bits"] = r.bits;
        e["groups"] = r.groups;
        e["layout"] = r.layout;
      }
      if (r.encoding == "cast") e["stored_dtype"] = r.layout;
      if (r.encoding == "ggml") {
        e["type"] = r.layout;
        e["blocks"] = r.groups;
      }
      e["bytes"] = r.bytes;
      tensors.push_back(std::move(e));
    }
    j["tensors"] = std::move(tensors);
    fmt::print("{}\n", detail::json_text(j, 2));
    return 0;
  }
  fmt::print("{}: {}, {} bytes", f.input, j["format"].get<std::string>(), with_commas(j["bytes"].get<std::uint64_t>()));
  if (j.contains("source")) {
    fmt::print(", from {} ({}, {} bytes) by {}", j["source"]["file"].get<std::string>(),
               j["source"]["format"].get<std::string>(), with_commas(j["source"]["bytes"].get<std::uint64_t>()),
               j["producer"].get<std::string>());
  }
  fmt::print("\n");
  if (!metadata.empty()) {
    fmt::print("\n  {} metadata pairs{}\n", metadata.size(),
               j["format"] == "wq" ? " (of the GGUF it was made from)" : "");
    std::size_t key_width = 0;
    for (const MetadataEntry& m : metadata) key_width = std::max(key_width, m.key.size());
    for (const MetadataEntry& m : metadata) {
      fmt::print("  {:<{}}  {:<14} {}\n", m.key, std::min<std::size_t>(key_width, 44), m.type, m.value);
    }
  }
  fmt::print("\n  {:<44} {:>5} {:>18} {:>8} {:>4} {:>8} {:>12}  {}\n", "tensor", "dtype", "shape", "encoding",
             "bits", "groups", "bytes", "layout");
  std::uint64_t total = 0;
  for (const Row& r : rows) {
    fmt::print("  {:<44} {:>5} {:>18} {:>8} {:>4} {:>8} {:>12}  {}\n", r.name, r.dtype, r.shape, r.encoding,
               r.bits ? std::to_string(r.bits) : "-", r.groups ? std::to_string(r.groups) : "-",
               with_commas(r.bytes), r.layout);
    total += r.bytes;
  }
  fmt::print("\n  {} tensors, {} bytes of tensor data\n", rows.size(), with_commas(total));
  return 0;
}

}  // namespace

CommandRunner add_inspect_command(CLI::App& app) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "List the tensors of a WQ container or checkpoint, and a GGUF's metadata pairs (or those a container "
                 "made from a GGUF carries): strings quoted and cut at 120 characters, arrays by their length");
  cmd->add_option("file", flags->input, "WQ container or checkpoint")->required();
  cmd->add_flag("--json", flags->json, "Print JSON instead of a table");
  add_read_flags(*cmd, flags->max_view_expansion);
  return [flags] { return run_inspect(*flags); };
}

}  // namespace wq::cli
