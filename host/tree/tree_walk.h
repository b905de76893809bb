// Tree mode, step 1: what is in the input folders and what each file becomes.
//
// Every regular file under the inputs is classified by content (wq::classify_file): a
// checkpoint becomes NAME.wq.safetensors beside where it was (NAME = the file name without its
// last extension), a sharded checkpoint (its *.index.json) becomes one container per shard plus
// a rewritten index (its shards are not also taken one by one), anything else is copied
// unchanged. The output mirrors the input's folders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wq/pipeline.h"

namespace wq::detail {

enum class UnitKind {
  kQuantize,  ///< one checkpoint -> one container
  kSharded,   ///< an index + its shards -> a container per shard + a new index (one unit: the
              ///< index can only be written when every shard is done)
  kCopy,      ///< any other file, copied byte for byte
  kConfig,    ///< compressed-tensors output: a model folder's config.json, written with its quantization_config
};

/// One input file and its output. `rel_*` are relative to the output root: they name the file
/// in reports and key it in the journal.
struct TreeFile {
  std::string input;
  std::string output;
  std::string rel_input;   ///< where the input sits in the mirrored tree ("sub/model.pt")
  std::string rel_output;  ///< "sub/model.wq.safetensors"
};

/// The indivisible piece of work that --shard assigns to one process.
struct WorkUnit {
  UnitKind kind = UnitKind::kCopy;
  TreeFile file;                 ///< the checkpoint, the index (kSharded) or the copied file
  std::vector<TreeFile> shards;  ///< kSharded: each shard -> its container, in index order
  /// kQuantize of a shard index into one GGUF file: its shard files, whose sizes and mtimes the
  /// journal checks too (its input is the index alone).
  std::vector<std::string> parts;
  std::uint64_t bytes = 0;       ///< input bytes (index and shards together): the work's weight
};

struct TreePlan {
  std::string output_root;
  std::vector<WorkUnit> units;     ///< sorted by file.rel_input
  std::vector<std::string> notes;  ///< what was skipped and why (links not followed, ...)
};

/// Walks `inputs` (folders, walked recursively, or single files). One input folder is
/// mirrored into `output_root` itself; with several inputs each goes to output_root/NAME.
/// Symbolic links are followed only to files inside the same input folder; .git folders are
/// skipped. Throws
/// Error(kInputMissing) for a missing input, Error(kUsage) when the output folder is inside an
/// input folder (or the reverse), or when two inputs would give the same output,
/// Error(kBadFormat) for an unreadable shard index. With OutputFormat::kGguf each checkpoint
/// becomes NAME.gguf, a sharded checkpoint one kQuantize unit of its index (NAME.gguf holding
/// every shard's tensors; WorkUnit::parts lists the shards).
/// With OutputFormat::kCompressedTensors every checkpoint (safetensors only: others are
/// Error(kUsage)) and shard keeps its name, and each folder holding one needs a config.json
/// without a quantization_config (its unit is kConfig); else Error(kUsage) before anything is
/// written.
TreePlan walk_tree(const std::vector<std::string>& inputs, const std::string& output_root,
                   OutputFormat format = OutputFormat::kContainer);

/// "model.pt" -> "model.wq.safetensors" (kGguf: "model.gguf"); "model.safetensors.index.json"
/// -> "model.wq.safetensors.index.json" (kGguf: "model.gguf").
std::string container_name_for(const std::string& file_name, bool shard_index,
                               OutputFormat format = OutputFormat::kContainer);

}  // namespace wq::detail
