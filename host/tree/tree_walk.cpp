#include "tree/tree_walk.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include "cpu/thread_pool.h"
#include "formats/sharded_safetensors.h"
#include "pipeline/sharded_output.h"
#include "wq/checkpoint.h"
#include "wq/error.h"
#include "wq/tree.h"

namespace wq::detail {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_inside(const fs::path& inner, const fs::path& outer) {
  const auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end();
}

// Our own leftovers are never inputs: temporaries of an interrupted run and journals.
bool is_our_bookkeeping(const std::string& name) {
  return name.find(".wq-tmp.") != std::string::npos || (name.rfind(".wq-journal", 0) == 0 && ends_with(name, ".jsonl"));
}

std::uint64_t size_of(const fs::path& p) {
  std::error_code ec;
  const std::uintmax_t n = fs::file_size(p, ec);
  return ec ? 0 : static_cast<std::uint64_t>(n);
}

std::string join(const std::string& prefix, const std::string& rel) {
  return prefix.empty() ? rel : prefix + "/" + rel;
}

// A file found under an input: its path and its place in the mirrored tree.
struct Found {
  fs::path path;
  std::string rel;  ///< relative to the output root, '/'-separated
};

// Every file's kind, on several threads: each is a stat, a mapping and a header parse, which
// add up over a tree of thousands of small files. The first error in the files' order is
// thrown, as one thread would.
std::vector<FileKind> classify_all(const std::vector<Found>& files) {
  std::vector<FileKind> kinds(files.size(), FileKind::kOther);
  std::vector<std::exception_ptr> errors(files.size());
  detail::ThreadPool pool(metadata_threads(files.size()));
  pool.parallel_for(files.size(), [&](std::size_t i) {
    try {
      kinds[i] = classify_file(files[i].path.string());
    } catch (...) {
      errors[i] = std::current_exception();
    }
  });
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return kinds;
}

class Walker {
 public:
  Walker(std::string output_root, TreePlan* plan, OutputFormat format)
      : root_(std::move(output_root)), plan_(plan), format_(format) {}

  void add_folder(const fs::path& folder, const std::string& prefix) {
    std::error_code ec;
    const fs::path base = fs::canonical(folder, ec);
    if (ec) throw Error(ErrorCode::kInputMissing, folder.string() + ": cannot read: " + ec.message());
    fs::recursive_directory_iterator it(folder, fs::directory_options::none, ec), end;
    if (ec) throw Error(ErrorCode::kInputMissing, folder.string() + ": cannot read: " + ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) throw Error(ErrorCode::kInputMissing, folder.string() + ": cannot read: " + ec.message());
      const fs::path& p = it->path();
      // Lexically: the path under the folder, as found. (fs::relative() resolves links, which
      // put a linked file's output beside its target, and costs system calls per file.)
      const std::string rel = join(prefix, p.lexically_relative(folder).generic_string());
      if (is_our_bookkeeping(p.filename().string())) continue;
      // A git clone's history (with LFS, a second copy of every checkpoint) is not part of the
      // model, and copied beside quantized files it would describe other files.
      if (p.filename() == ".git" && it->is_directory(ec) && !it->is_symlink(ec)) {
        plan_->notes.push_back(p.string() + ": git repository data, not copied");
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_symlink(ec)) {
        // Followed only to a file inside the same input folder: never out of the tree, never
        // into folders (no cycles, no file taken twice by two paths).
        const fs::path target = fs::canonical(p, ec);
        if (ec || !is_inside(target, base)) {
          plan_->notes.push_back(p.string() + ": symbolic link out of the input folder, not followed");
        } else if (!fs::is_regular_file(target, ec)) {
          plan_->notes.push_back(p.string() + ": symbolic link to a folder, not followed");
        } else {
          files_.push_back({p, rel});
        }
        continue;
      }
      if (it->is_regular_file(ec)) files_.push_back({p, rel});
    }
  }

  void add_file(const fs::path& file, const std::string& rel) { files_.push_back({file, rel}); }

  void finish() {
    // Shard indexes first, so that their shards are not also taken one by one.
    std::set<std::string> shard_paths;
    std::vector<std::pair<Found, FileKind>> kinds;
    const std::vector<FileKind> file_kinds = classify_all(files_);
    for (std::size_t i = 0; i < files_.size(); ++i) kinds.emplace_back(files_[i], file_kinds[i]);
    for (const auto& [f, kind] : kinds) {
      if (kind != FileKind::kShardIndex) continue;
      const detail::ShardIndex index = detail::read_shard_index(f.path.string());
      WorkUnit unit;
      if (format_ == OutputFormat::kGguf) {
        // One GGUF file of every shard's tensors, from the index (quantize_file() reads them).
        unit.kind = UnitKind::kQuantize;
        unit.file = make_file(f, container_name_for(f.path.filename().string(), true, format_));
        unit.bytes = size_of(f.path);
        for (const std::string& shard : index.shards) {
          const fs::path s = f.path.parent_path() / shard;
          unit.parts.push_back(s.string());
          unit.bytes += size_of(s);
          shard_paths.insert(fs::weakly_canonical(s).string());
        }
        plan_->units.push_back(std::move(unit));
        continue;
      }
      unit.kind = UnitKind::kSharded;
      const std::string folder_rel = parent_of(f.rel);
      const bool packed = format_ == OutputFormat::kCompressedTensors;  // shards keep their names
      unit.file = make_file(f, packed ? f.path.filename().string() : container_name_for(f.path.filename().string(), true));
      unit.bytes = size_of(f.path);
      for (const std::string& shard : index.shards) {
        const Found s{f.path.parent_path() / shard, join(folder_rel, shard)};
        unit.shards.push_back(make_file(s, packed ? shard : detail::shard_container_name(shard)));
        unit.bytes += size_of(s.path);
        shard_paths.insert(fs::weakly_canonical(s.path).string());
      }
      plan_->units.push_back(std::move(unit));
    }
    for (const auto& [f, kind] : kinds) {
      if (kind == FileKind::kShardIndex) continue;
      if (!shard_paths.empty() && shard_paths.count(fs::weakly_canonical(f.path).string()) != 0) continue;
      WorkUnit unit;
      unit.kind = kind == FileKind::kCheckpoint ? UnitKind::kQuantize : UnitKind::kCopy;
      const bool packed = format_ == OutputFormat::kCompressedTensors;
      if (packed && kind == FileKind::kCheckpoint && !ends_with(f.path.filename().string(), ".safetensors")) {
        throw Error(ErrorCode::kUsage, f.path.string() + ": compressed-tensors output is a safetensors model folder; "
                                                         "this checkpoint is not safetensors (convert it, or move it "
                                                         "out of the folder)");
      }
      unit.file = make_file(f, kind == FileKind::kCheckpoint && !packed
                                   ? container_name_for(f.path.filename().string(), false, format_)
                                   : f.path.filename().string());
      unit.bytes = size_of(f.path);
      if (kind == FileKind::kContainer) {
        plan_->notes.push_back(f.path.string() + ": already a WQ container, copied unchanged");
      }
      plan_->units.push_back(std::move(unit));
    }
    std::sort(plan_->units.begin(), plan_->units.end(),
              [](const WorkUnit& a, const WorkUnit& b) { return a.file.rel_input < b.file.rel_input; });
    if (format_ == OutputFormat::kCompressedTensors) find_model_configs();
    check_distinct_outputs();
  }

 private:
  static std::string parent_of(const std::string& rel) {
    const auto slash = rel.rfind('/');
    return slash == std::string::npos ? std::string() : rel.substr(0, slash);
  }

  TreeFile make_file(const Found& f, const std::string& output_name) const {
    TreeFile t;
    t.input = f.path.string();
    t.rel_input = f.rel;
    t.rel_output = join(parent_of(f.rel), output_name);
    t.output = root_ + "/" + t.rel_output;
    return t;
  }

  // compressed-tensors output: every folder with a checkpoint is a model folder whose
  // config.json (vLLM reads the scheme there) is rewritten, not copied. Checked before anything
  // is written.
  void find_model_configs() {
    std::map<std::string, WorkUnit*> configs;  // folder -> its config.json's unit
    for (WorkUnit& u : plan_->units) {
      if (u.kind == UnitKind::kCopy && fs::path(u.file.rel_input).filename() == "config.json") {
        configs[parent_of(u.file.rel_input)] = &u;
      }
    }
    for (const WorkUnit& u : plan_->units) {
      if (u.kind != UnitKind::kQuantize && u.kind != UnitKind::kSharded) continue;
      const auto it = configs.find(parent_of(u.file.rel_input));
      if (it == configs.end()) {
        throw Error(ErrorCode::kUsage, u.file.input + ": no config.json beside it; compressed-tensors output is a "
                                                      "Hugging Face model folder, whose config.json gains the "
                                                      "quantization_config that vLLM reads");
      }
      if (it->second->kind == UnitKind::kConfig) continue;
      check_model_config(it->second->file.input);
      it->second->kind = UnitKind::kConfig;
    }
  }

  // Two inputs that would write one output (a.pt and a.safetensors side by side, or a copied
  // a.wq.safetensors beside a.pt) are refused before anything is written.
  void check_distinct_outputs() const {
    std::map<std::string, std::string> owner;
    const auto claim = [&](const TreeFile& f) {
      const auto [it, inserted] = owner.emplace(f.rel_output, f.input);
      if (!inserted) {
        throw Error(ErrorCode::kUsage, f.input + " and " + it->second + " would both be written to " + f.output +
                                           "; rename one of them");
      }
    };
    for (const WorkUnit& u : plan_->units) {
      claim(u.file);
      for (const TreeFile& s : u.shards) claim(s);
    }
  }

  std::string root_;
  TreePlan* plan_;
  OutputFormat format_;
  std::vector<Found> files_;
};

}  // namespace

std::string container_name_for(const std::string& file_name, bool shard_index, OutputFormat format) {
  std::string stem = file_name;
  if (shard_index) {
    if (ends_with(stem, ".index.json")) stem.resize(stem.size() - std::string(".index.json").size());
    if (ends_with(stem, ".safetensors")) stem.resize(stem.size() - std::string(".safetensors").size());
    return stem + (format == OutputFormat::kGguf ? ".gguf" : ".wq.safetensors.index.json");
  }
  const auto dot = stem.rfind('.');
  if (dot != std::string::npos && dot != 0) stem.resize(dot);
  return stem + (format == OutputFormat::kGguf ? ".gguf" : ".wq.safetensors");
}

TreePlan walk_tree(const std::vector<std::string>& inputs, const std::string& output_root, OutputFormat format) {
  TreePlan plan;
  plan.output_root = output_root;
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(fs::absolute(output_root), ec);
  Walker walker(output_root, &plan, format);
  std::set<std::string> names;
  for (const std::string& input : inputs) {
    if (!fs::exists(input, ec)) throw Error(ErrorCode::kInputMissing, input + ": no such file or folder");
    const fs::path in = fs::canonical(input, ec);
    const bool folder = fs::is_directory(input, ec);
    if (folder && (is_inside(out, in) || is_inside(in, out))) {
      throw Error(ErrorCode::kUsage, "output folder " + output_root + (is_inside(out, in) ? " is inside" : " contains") +
                                         " input folder " + input +
                                         "; give an output folder outside the input, e.g. " +
                                         (in.parent_path() / (in.filename().string() + "-wq")).string());
    }
    if (!folder && in == out) throw Error(ErrorCode::kUsage, output_root + ": is the input " + input);
    // One input folder is mirrored into the output root itself; several go side by side.
    std::string name = inputs.size() == 1 && folder ? std::string() : in.filename().string();
    if (!name.empty() && !names.insert(name).second) {
      throw Error(ErrorCode::kUsage, input + ": another input has the same name '" + name +
                                         "'; quantize them into different output folders");
    }
    if (folder) {
      walker.add_folder(input, name);
    } else {
      walker.add_file(input, name);
    }
  }
  walker.finish();
  return plan;
}

}  // namespace wq::detail

namespace wq {

std::string tree_output_name(const std::string& file_name, bool shard_index, OutputFormat format) {
  if (format == OutputFormat::kCompressedTensors) return file_name;
  return detail::container_name_for(file_name, shard_index, format);
}

}  // namespace wq
