#include "formats/torch_reader.h"

#include <cstring>
#include <map>
#include <optional>

#include "core/checked_math.h"
#include "formats/pickle/unpickler.h"
#include "formats/state_dict_walk.h"
#include "formats/strided_copy.h"
#include "formats/zip_reader.h"
#include "io/mapped_file.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using pickle::Kind;
using pickle::Value;

constexpr std::uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                         0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

struct StorageType {
  const char* name;
  std::optional<DType> dtype;
  std::size_t element;
};

const StorageType* storage_type(const std::string& global) {
  static const StorageType kTypes[] = {
      {"torch.DoubleStorage", DType::kF64, 8}, {"torch.FloatStorage", DType::kF32, 4},
      {"torch.HalfStorage", DType::kF16, 2},   {"torch.BFloat16Storage", DType::kBF16, 2},
      {"torch.LongStorage", DType::kI64, 8},   {"torch.IntStorage", DType::kI32, 4},
      {"torch.ShortStorage", DType::kI16, 2},  {"torch.CharStorage", DType::kI8, 1},
      {"torch.ByteStorage", DType::kU8, 1},    {"torch.BoolStorage", DType::kBool, 1},
  };
  for (const StorageType& t : kTypes) {
    if (global == t.name) return &t;
  }
  return nullptr;
}

/// Where a tensor's elements are: a storage record, a byte offset into it, and the view's
/// shape and strides (in elements) when it is not dense.
struct TensorRef {
  std::string storage_key;
  DType dtype = DType::kF32;
  std::uint64_t byte_offset = 0;  // into the storage record; 0 for an empty tensor
  std::uint64_t dense_bytes = 0;  // element count x element size
  bool contiguous = true;
  std::vector<std::int64_t> shape, stride;
};

// Shared by both formats: the pickle's object graph -> named tensors.
class TorchCheckpoint : public CheckpointReader {
 public:
  const std::string& path() const noexcept override { return path_; }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_bytes_; }
  const std::vector<TensorInfo>& tensors() const noexcept override { return infos_; }

  // A view stays valid until release(index): the storages of unreleased tensors stay loaded
  // (counted per storage, so shared storages are loaded once while any user is pending). A
  // failed call changes nothing, so a retry starts afresh.
  TensorView tensor(std::size_t index) override {
    const TensorRef& t = refs_.at(index);
    const TensorInfo& info = infos_.at(index);
    if (auto it = views_.find(index); it != views_.end()) return TensorView{info.name, info.dtype, info.shape, it->second};
    std::vector<std::byte> dense(t.contiguous ? 0 : t.dense_bytes);  // before the storage is counted as used
    const std::byte* base = storage_bytes(t.storage_key) + t.byte_offset;
    ++users_[t.storage_key];
    if (!t.contiguous) {
      copy_strided(base, dtype_size(t.dtype), t.shape, t.stride, dense.data());
      base = dense.data();
      materialised_[index] = std::move(dense);  // moving a vector keeps its buffer where it is
    }
    static constexpr std::byte kNoElements{};  // an empty tensor of an empty record: no null view
    if (base == nullptr) base = &kNoElements;
    views_[index] = base;
    return TensorView{info.name, info.dtype, info.shape, base};
  }

  void release(std::size_t index) override {
    if (views_.erase(index) == 0) return;
    materialised_.erase(index);
    const std::string& key = refs_.at(index).storage_key;
    if (--users_[key] == 0) {
      users_.erase(key);
      unload(key);
    }
  }

 protected:
  // The bytes of a whole storage, valid until unload(key).
  virtual const std::byte* storage_bytes(const std::string& key) = 0;
  virtual void unload(const std::string& key) = 0;
  virtual std::uint64_t storage_size(const std::string& key) = 0;

  // Loads `pickle_bytes`, resolving persistent ids to Storage descriptions.
  void parse(const std::byte* pickle_bytes, std::size_t size, const std::string& label, bool legacy) {
    pickle::Arena arena;
    const auto persistent_load = [&](Value* pid) -> Value* {
      const std::size_t fields = legacy ? 6 : 5;
      if (!pid->is(Kind::kTuple) || pid->items.size() != fields || !pid->items[0]->is(Kind::kStr) ||
          pid->items[0]->text != "storage" || !pid->items[1]->is(Kind::kGlobal) || !pid->items[2]->is(Kind::kStr) ||
          !pid->items[4]->is(Kind::kInt) || pid->items[4]->integer < 0) {
        throw Error(ErrorCode::kBadFormat, label + ": persistent id is not a ('storage', type, key, location, numel) tuple");
      }
      Value* v = arena.make(Kind::kObject);
      if (v == nullptr || !arena.charge(sizeof(Value*) * pid->items.size())) {
        throw Error(ErrorCode::kBadFormat, label + ": too many storages");
      }
      v->text = "torch.storage";
      v->items = pid->items;  // add_tensor() reads type, key and (legacy) view from here
      return v;
    };
    pickle::Unpickler unpickler(pickle_bytes, size, label, arena, persistent_load);
    const Value* root = unpickler.load();
    consumed_ = unpickler.consumed();
    const auto is_tensor = [](const Value* v) { return v->is_object("torch.tensor") || v->is_object("torch.tensor_v3"); };
    walk_state_dict(root, label, arena, is_tensor, [&](const std::string& name, const Value* v) { add_tensor(name, v, label); });
  }

  std::size_t consumed_ = 0;
  std::string path_;
  std::string format_ = "torch";
  std::uint64_t file_bytes_ = 0;
  ReadOptions options_;

 private:
  // Checks everything about a tensor that can be checked without its bytes, so that tensor()
  // only reads what lies inside its storage record: every integer of the pickle is
  // range-checked and every sum and product is overflow-checked.
  void add_tensor(const std::string& name, const Value* v, const std::string& label) {
    const std::string where = label + ": tensor '" + name + "'";
    const auto bad = [&](const std::string& what) { return Error(ErrorCode::kBadFormat, where + " " + what); };
    const std::vector<Value*>& a = v->items;
    if (v->is_object("torch.tensor_v3")) {
      throw Error(ErrorCode::kBadFormat, where + " has dtype '" + (a[6]->is(Kind::kGlobal) ? a[6]->text : "?") +
                                             "', which wq does not support");
    }
    if (!a[0]->is_object("torch.storage") || !a[1]->is(Kind::kInt) || a[1]->integer < 0) {
      throw bad("is not built from a storage and an offset");
    }
    const std::vector<Value*>& storage = a[0]->items;  // the persistent id, checked by parse()
    TensorRef t;
    t.storage_key = storage[2]->text;
    const StorageType* type = storage_type(storage[1]->text);
    if (type == nullptr || !type->dtype) {
      throw bad("is stored as '" + storage[1]->text + "', which wq does not support");
    }
    t.dtype = *type->dtype;
    if (!pickle::int_tuple(a[2], &t.shape) || !pickle::int_tuple(a[3], &t.stride) || t.shape.size() != t.stride.size()) {
      throw bad("has a malformed size or stride");
    }
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] < 0 || t.stride[d] < 0) throw bad("has a negative size or stride");
    }
    Shape shape(t.shape.begin(), t.shape.end());
    const std::optional<std::uint64_t> dense = checked_tensor_bytes(shape, t.dtype);
    const std::optional<std::uint64_t> extent = view_extent(t.shape, t.stride);
    if (!dense || !extent) throw bad("has a size or stride too large for 64 bits");
    t.dense_bytes = *dense;
    t.contiguous = is_contiguous(t.shape, t.stride);
    // The elements it may use: the whole record, or an old storage view's (offset, size) of it.
    const std::uint64_t record = storage_size(t.storage_key);
    std::uint64_t first = 0, available = record / type->element;
    const bool storage_view = storage.size() == 6 && storage[5]->is(Kind::kTuple);
    if (storage_view) {
      const std::vector<Value*>& view = storage[5]->items;  // (view_key, offset, size), legacy only
      if (view.size() != 3 || !view[1]->is(Kind::kInt) || !view[2]->is(Kind::kInt) || view[1]->integer < 0 ||
          view[2]->integer < 0) {
        throw bad("has a malformed storage view");
      }
      first = static_cast<std::uint64_t>(view[1]->integer);
      const auto size = static_cast<std::uint64_t>(view[2]->integer);
      if (!range_within(first, size, available)) {
        throw bad("uses a storage view of elements [" + std::to_string(first) + ", +" + std::to_string(size) +
                  ") outside its storage of " + std::to_string(available) + " elements");
      }
      available = size;
    }
    const auto offset = static_cast<std::uint64_t>(a[1]->integer);
    if (*extent != 0) {
      if (!range_within(offset, *extent, available)) {
        throw bad("reaches past the end of its storage: elements [" + std::to_string(offset) + ", +" +
                  std::to_string(*extent) + ") of " + std::to_string(available) +
                  (storage_view ? " (a storage view)" : ""));
      }
      t.byte_offset = (first + offset) * type->element;  // < record: no overflow
    }
    // A broadcast view (stride 0, overlapping strides) is larger than the storage it reads; its
    // dense copy is what reading it costs, so it is bounded. A file's other tensors are at
    // most as large as the storage bytes the file holds.
    if (*dense > *extent * type->element && *dense > options_.max_expanded_view_bytes) {
      throw Error(ErrorCode::kUnsupported,
                  where + " is a broadcast view of " + std::to_string(*extent * type->element) +
                      " storage bytes whose dense copy would take " + std::to_string(*dense) +
                      " bytes, more than the limit of " + std::to_string(options_.max_expanded_view_bytes) +
                      " for expanded views",
                  {{"max_expanded_view_bytes", ""}});
    }
    infos_.push_back(TensorInfo{name, t.dtype, std::move(shape)});
    refs_.push_back(std::move(t));
  }

  std::vector<TensorInfo> infos_;
  std::vector<TensorRef> refs_;
  std::map<std::size_t, const std::byte*> views_;                 // unreleased views
  std::map<std::size_t, std::vector<std::byte>> materialised_;    // dense copies of strided views
  std::map<std::string, std::size_t> users_;                      // unreleased tensors per storage
};

class TorchZipCheckpoint final : public TorchCheckpoint {
 public:
  TorchZipCheckpoint(const std::string& path, const ReadOptions& options) : zip_(path) {
    path_ = path;
    options_ = options;
    const std::vector<std::string>& names = zip_.names();
    if (names.empty()) throw Error(ErrorCode::kBadFormat, path + ": empty zip archive");
    // The top folder is whatever entry 0 says (the file's stem, or "archive"): never assume.
    const std::size_t slash = names[0].find('/');
    if (slash == std::string::npos) throw Error(ErrorCode::kBadFormat, path + ": not a torch checkpoint (no top folder)");
    prefix_ = names[0].substr(0, slash + 1);
    if (zip_.find(prefix_ + "constants.pkl") >= 0) {
      throw Error(ErrorCode::kBadFormat, path + ": a TorchScript archive, not a checkpoint (save the state_dict instead)");
    }
    const std::int64_t pkl = zip_.find(prefix_ + "data.pkl");
    if (pkl < 0) throw Error(ErrorCode::kBadFormat, path + ": zip archive without data.pkl: not a torch checkpoint");
    file_bytes_ = MappedFile(path).size();
    std::vector<std::byte> pickle_bytes;
    zip_.read(static_cast<std::size_t>(pkl), &pickle_bytes, false);
    parse(pickle_bytes.data(), pickle_bytes.size(), path + ":" + prefix_ + "data.pkl", false);
  }

 private:
  std::int64_t record(const std::string& key) {
    const std::int64_t index = zip_.find(prefix_ + "data/" + key);
    if (index < 0) throw Error(ErrorCode::kBadFormat, path_ + ": storage record 'data/" + key + "' is missing");
    return index;
  }

  std::uint64_t storage_size(const std::string& key) override { return zip_.size(static_cast<std::size_t>(record(key))); }

  const std::byte* storage_bytes(const std::string& key) override {
    // torch stores every record uncompressed: read it in place, without a copy.
    if (const std::byte* in_place = zip_.stored_data(static_cast<std::size_t>(record(key)))) return in_place;
    auto it = loaded_.find(key);
    if (it == loaded_.end()) {  // read whole before it is kept: a failed read leaves nothing behind
      std::vector<std::byte> bytes;
      zip_.read(static_cast<std::size_t>(record(key)), &bytes, false);
      it = loaded_.emplace(key, std::move(bytes)).first;
    }
    return it->second.data();
  }
  void unload(const std::string& key) override {
    if (loaded_.erase(key) == 0) zip_.release_stored(static_cast<std::size_t>(record(key)));
  }

  ZipReader zip_;
  std::string prefix_;
  std::map<std::string, std::vector<std::byte>> loaded_;  // storages of unreleased tensors
};

class TorchLegacyCheckpoint final : public TorchCheckpoint {
 public:
  TorchLegacyCheckpoint(const std::string& path, const ReadOptions& options) : file_(path) {
    path_ = path;
    options_ = options;
    format_ = "torch-legacy";
    file_bytes_ = file_.size();
    const std::byte* data = file_.data();
    std::size_t pos = 0;
    pickle::Arena arena;
    // Five pickles in a row: magic, protocol version, sys_info, the object, the storage keys.
    const auto next = [&](const char* what, pickle::PersistentLoad load = {}) {
      pickle::Unpickler u(data + pos, file_.size() - pos, path + " (" + what + ")", arena, std::move(load));
      const Value* v = u.load();
      pos += u.consumed();
      return v;
    };
    // The magic number pickle (an 80-bit integer) is matched byte for byte, not unpickled.
    if (!is_torch_legacy(data, file_.size())) throw Error(ErrorCode::kBadFormat, path + ": not a legacy torch file");
    pos = sizeof kLegacyMagic;
    const Value* protocol = next("protocol version");
    if (!protocol->is(Kind::kInt) || protocol->integer != 1001) {
      throw Error(ErrorCode::kBadFormat, path + ": unsupported legacy torch protocol version");
    }
    const Value* sys_info = next("sys_info");
    for (const auto& [k, v] : sys_info->is(Kind::kDict) ? sys_info->entries : decltype(sys_info->entries){}) {
      if (k->is(Kind::kStr) && k->text == "little_endian" && v->is(Kind::kBool) && !v->boolean) {
        throw Error(ErrorCode::kBadFormat, path + ": big-endian legacy torch files are not supported");
      }
    }
    object_start_ = pos;
    // The object pickle is parsed for real once the storage table after it is known; a first
    // pass finds its end and each storage's element size.
    std::size_t object_bytes = 0;
    std::map<std::string, std::size_t> element_size = scan_element_sizes(data + pos, file_.size() - pos, &object_bytes);
    const std::size_t object_end = pos + object_bytes;
    pos = object_end;
    const Value* keys = next("storage keys");
    if (!keys->is(Kind::kList)) throw Error(ErrorCode::kBadFormat, path + ": storage key list is missing");
    // After the pickles: for each key, an int64 element count and the raw elements.
    for (const Value* key : keys->items) {
      if (!key->is(Kind::kStr)) throw Error(ErrorCode::kBadFormat, path + ": storage key is not a string");
      if (file_.size() - pos < 8) throw Error(ErrorCode::kBadFormat, path + ": truncated storage data");
      std::uint64_t numel = 0;
      std::memcpy(&numel, data + pos, 8);
      pos += 8;
      const std::size_t element = element_size.count(key->text) ? element_size[key->text] : 1;
      if (numel > (file_.size() - pos) / element) {
        throw Error(ErrorCode::kBadFormat, path + ": storage '" + key->text + "' runs past the end of the file (truncated?)");
      }
      records_[key->text] = {pos, numel * element};
      pos += numel * element;
    }
    parse(data + object_start_, object_end - object_start_, path, true);
  }

 private:
  // Element sizes by storage key, from a first pass over the object pickle's persistent ids.
  std::map<std::string, std::size_t> scan_element_sizes(const std::byte* p, std::size_t n, std::size_t* consumed) {
    std::map<std::string, std::size_t> sizes;
    pickle::Arena arena;
    pickle::Unpickler u(p, n, path_, arena, [&](Value* pid) {
      if (pid->is(Kind::kTuple) && pid->items.size() == 6 && pid->items[1]->is(Kind::kGlobal) && pid->items[2]->is(Kind::kStr)) {
        const StorageType* t = storage_type(pid->items[1]->text);
        if (t != nullptr) sizes[pid->items[2]->text] = t->element;
      }
      return pid;
    });
    u.load();
    *consumed = u.consumed();
    return sizes;
  }

  std::uint64_t storage_size(const std::string& key) override {
    const auto it = records_.find(key);
    if (it == records_.end()) throw Error(ErrorCode::kBadFormat, path_ + ": storage '" + key + "' has no data");
    return it->second.second;
  }
  const std::byte* storage_bytes(const std::string& key) override {
    return file_.data() + records_.at(key).first;
  }
  void unload(const std::string& key) override {
    const auto& [offset, bytes] = records_.at(key);
    file_.release(offset, bytes);
  }

 public:
  std::span<const std::byte> mapped_bytes() const noexcept override { return {file_.data(), file_.size()}; }

 private:
  MappedFile file_;
  std::size_t object_start_ = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> records_;  // offset, bytes
};

}  // namespace

bool is_torch_legacy(const std::byte* data, std::size_t size) {
  return size >= sizeof kLegacyMagic && std::memcmp(data, kLegacyMagic, sizeof kLegacyMagic) == 0;
}

std::unique_ptr<CheckpointReader> open_torch_zip(const std::string& path, const ReadOptions& options) {
  return std::make_unique<TorchZipCheckpoint>(path, options);
}

std::unique_ptr<CheckpointReader> open_torch_legacy(const std::string& path, const ReadOptions& options) {
  return std::make_unique<TorchLegacyCheckpoint>(path, options);
}

}  // namespace wq::detail
