#include "formats/torch_reader.h"

#include <cstring>
#include <map>
#include <optional>

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

/// What a persistent id named: one storage of the checkpoint.
struct Storage {
  std::string key;
  std::string type;              // the torch.XStorage symbol
  std::uint64_t numel = 0;
  std::uint64_t element_offset = 0;  // legacy storage views: offset into the root storage
};

struct TensorRef {
  std::string storage_key;
  DType dtype = DType::kF32;
  std::uint64_t offset = 0;  // elements
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
  // (counted per storage, so shared storages are loaded once while any user is pending).
  TensorView tensor(std::size_t index) override {
    const TensorRef& t = refs_.at(index);
    const TensorInfo& info = infos_.at(index);
    const std::size_t element = dtype_size(t.dtype);
    if (auto it = views_.find(index); it != views_.end()) return TensorView{info.name, info.dtype, info.shape, it->second};
    const std::byte* base = acquire(t.storage_key) + t.offset * element;
    if (!is_contiguous(t.shape, t.stride)) {
      std::vector<std::byte>& dense = materialised_[index];
      dense.resize(element_count(info.shape) * element);
      copy_strided(base, element, t.shape, t.stride, dense.data());
      base = dense.data();
    }
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
      if (v == nullptr) throw Error(ErrorCode::kBadFormat, label + ": too many storages");
      v->text = "torch.storage";
      v->items = pid->items;
      Storage s{pid->items[2]->text, pid->items[1]->text, static_cast<std::uint64_t>(pid->items[4]->integer), 0};
      if (legacy && pid->items[5]->is(Kind::kTuple)) {
        // An old storage view: (view_key, offset, size) into the root storage `key`.
        const Value* view = pid->items[5];
        if (view->items.size() != 3 || !view->items[1]->is(Kind::kInt)) {
          throw Error(ErrorCode::kBadFormat, label + ": malformed storage view");
        }
        s.element_offset = static_cast<std::uint64_t>(view->items[1]->integer);
      }
      storages_.emplace(s.key, s);
      return v;
    };
    pickle::Unpickler unpickler(pickle_bytes, size, label, arena, persistent_load);
    const Value* root = unpickler.load();
    consumed_ = unpickler.consumed();
    const auto is_tensor = [](const Value* v) { return v->is_object("torch.tensor") || v->is_object("torch.tensor_v3"); };
    walk_state_dict(root, label, is_tensor, [&](const std::string& name, const Value* v) { add_tensor(name, v, label); });
  }

  std::size_t consumed_ = 0;
  std::string path_;
  std::string format_ = "torch";
  std::uint64_t file_bytes_ = 0;
  std::map<std::string, Storage> storages_;

 private:
  void add_tensor(const std::string& name, const Value* v, const std::string& label) {
    const std::string where = label + ": tensor '" + name + "'";
    const std::vector<Value*>& a = v->items;
    if (v->is_object("torch.tensor_v3")) {
      throw Error(ErrorCode::kBadFormat, where + " has dtype '" + (a[6]->is(Kind::kGlobal) ? a[6]->text : "?") +
                                             "', which wq does not support");
    }
    if (!a[0]->is_object("torch.storage") || !a[1]->is(Kind::kInt) || a[1]->integer < 0) {
      throw Error(ErrorCode::kBadFormat, where + " is not built from a storage and an offset");
    }
    TensorRef t;
    t.storage_key = a[0]->items[2]->text;
    const Storage& storage = storages_.at(t.storage_key);
    const StorageType* type = storage_type(storage.type);
    if (type == nullptr || !type->dtype) {
      throw Error(ErrorCode::kBadFormat, where + " is stored as '" + storage.type + "', which wq does not support");
    }
    t.dtype = *type->dtype;
    t.offset = static_cast<std::uint64_t>(a[1]->integer) + storage.element_offset;
    if (!pickle::int_tuple(a[2], &t.shape) || !pickle::int_tuple(a[3], &t.stride) || t.shape.size() != t.stride.size()) {
      throw Error(ErrorCode::kBadFormat, where + " has a malformed size or stride");
    }
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] < 0 || t.stride[d] < 0) throw Error(ErrorCode::kBadFormat, where + " has a negative size or stride");
    }
    // Every element the view touches must lie inside the storage record.
    const std::uint64_t record = storage_size(t.storage_key);
    const std::uint64_t extent = view_extent(t.shape, t.stride);
    if (extent != 0 && (t.offset + extent) * type->element > record) {
      throw Error(ErrorCode::kBadFormat, where + " reaches past the end of its storage (" + std::to_string(record) + " bytes)");
    }
    Shape shape(t.shape.begin(), t.shape.end());
    element_count(shape);
    infos_.push_back(TensorInfo{name, t.dtype, std::move(shape)});
    refs_.push_back(std::move(t));
  }

  const std::byte* acquire(const std::string& key) {
    ++users_[key];
    return storage_bytes(key);
  }

  std::vector<TensorInfo> infos_;
  std::vector<TensorRef> refs_;
  std::map<std::size_t, const std::byte*> views_;                 // unreleased views
  std::map<std::size_t, std::vector<std::byte>> materialised_;    // dense copies of strided views
  std::map<std::string, std::size_t> users_;                      // unreleased tensors per storage
};

class TorchZipCheckpoint final : public TorchCheckpoint {
 public:
  explicit TorchZipCheckpoint(const std::string& path) : zip_(path) {
    path_ = path;
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
    zip_.read(static_cast<std::size_t>(pkl), &pickle_bytes);
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
    if (it == loaded_.end()) {
      it = loaded_.emplace(key, std::vector<std::byte>()).first;
      zip_.read(static_cast<std::size_t>(record(key)), &it->second);
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
  explicit TorchLegacyCheckpoint(const std::string& path) : file_(path) {
    path_ = path;
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

std::unique_ptr<CheckpointReader> open_torch_zip(const std::string& path) {
  return std::make_unique<TorchZipCheckpoint>(path);
}

std::unique_ptr<CheckpointReader> open_torch_legacy(const std::string& path) {
  return std::make_unique<TorchLegacyCheckpoint>(path);
}

}  // namespace wq::detail
