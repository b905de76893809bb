#include "formats/paddle_reader.h"

#include <map>
#include <algorithm>
#include <set>

#include "core/checked_math.h"
#include "core/utf8.h"
#include "formats/pickle/unpickler.h"
#include "formats/pickled_ndarray.h"
#include "formats/state_dict_walk.h"
#include "io/mapped_file.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using pickle::Kind;
using pickle::Value;

constexpr const char* kNameTable = "StructuredToParameterName@@";
constexpr const char* kBigParams = "UnpackBigParamInfor@@";

class PaddleCheckpoint final : public CheckpointReader {
 public:
  explicit PaddleCheckpoint(const std::string& path) : file_(path) {
    pickle::Unpickler unpickler(file_.data(), file_.size(), path, arena_);
    const Value* root = unpickler.load();
    if (!root->is(Kind::kDict)) throw Error(ErrorCode::kBadFormat, path + ": pickle does not hold a dict of arrays");
    collect(root);
    if (infos_.empty()) throw Error(ErrorCode::kBadFormat, path + ": holds no arrays");
  }

  const std::string& path() const noexcept override { return file_.path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_.size(); }
  std::span<const std::byte> mapped_bytes() const noexcept override { return {file_.data(), file_.size()}; }
  const std::vector<TensorInfo>& tensors() const noexcept override { return infos_; }

  TensorView tensor(std::size_t index) override {
    const TensorInfo& info = infos_.at(index);
    const std::vector<PickledArray>& pieces = pieces_.at(index);
    if (pieces.size() == 1 && !pieces[0].fortran && !pieces[0].big_endian) {
      return TensorView{info.name, info.dtype, info.shape, reinterpret_cast<const std::byte*>(pieces[0].raw.data())};
    }
    std::string& dense = dense_[index];
    dense.clear();
    std::string part;
    for (const PickledArray& piece : pieces) {  // slices of a big parameter, in order
      to_row_major_le(piece, &part);
      dense += part;
    }
    if (dense.size() != element_count(info.shape) * dtype_size(info.dtype)) {
      throw Error(ErrorCode::kBadFormat, path() + ": tensor '" + info.name + "': its slices do not add up to its shape");
    }
    return TensorView{info.name, info.dtype, info.shape, reinterpret_cast<const std::byte*>(dense.data())};
  }

  void release(std::size_t index) override {
    dense_.erase(index);
    for (const PickledArray& piece : pieces_.at(index)) {
      const auto* p = reinterpret_cast<const std::byte*>(piece.raw.data());
      if (p >= file_.data() && p < file_.data() + file_.size()) {
        file_.release(static_cast<std::uint64_t>(p - file_.data()), piece.raw.size());
      }
    }
  }

  std::vector<std::pair<std::string, std::string>> name_table;

 private:
  void collect(const Value* root) {
    const std::string& p = path();
    // Slices of big parameters: slice name -> (parameter, original shape).
    std::map<std::string, std::string> slice_owner;
    std::map<std::string, std::pair<Shape, std::vector<std::string>>> big;
    for (const auto& [key, value] : root->entries) {
      if (!key->is(Kind::kStr)) continue;
      if (key->text == kNameTable && value->is(Kind::kDict)) {
        for (const auto& [k, v] : value->entries) {
          if (!k->is(Kind::kStr) || !v->is(Kind::kStr)) continue;
          if (!is_valid_utf8(k->text) || !is_valid_utf8(v->text)) {  // the table goes into the container's JSON
            throw Error(ErrorCode::kBadFormat, p + ": " + kNameTable + " entry '" + printable_utf8(k->text) +
                                                   "' is not valid UTF-8");
          }
          name_table.emplace_back(k->text, v->text);
        }
      } else if (key->text == kBigParams && value->is(Kind::kDict)) {
        for (const auto& [k, info] : value->entries) {
          if (!k->is(Kind::kStr) || !info->is(Kind::kDict)) continue;
          Shape shape;
          std::vector<std::string> slices;
          for (const auto& [field, v] : info->entries) {
            std::vector<std::int64_t> dims;
            if (field->text == "OriginShape" && pickle::int_tuple(v, &dims)) {
              for (std::int64_t d : dims) {
                if (d < 0) throw Error(ErrorCode::kBadFormat, p + ": big parameter '" + k->text + "' has a negative OriginShape");
              }
              shape.assign(dims.begin(), dims.end());
            }
            if (field->text == "slices" && (v->is(Kind::kList) || v->is(Kind::kTuple))) {
              for (const Value* s : v->items) slices.push_back(s->text);
            }
          }
          for (const std::string& s : slices) slice_owner[s] = k->text;
          big[k->text] = {shape, slices};
        }
      }
    }
    const auto is_array = [](const Value* v) {
      return is_pickled_ndarray(v) || (v->is(Kind::kTuple) && v->items.size() == 2 && v->items[0]->is(Kind::kStr) &&
                                       is_pickled_ndarray(v->items[1]));
    };
    std::map<std::string, PickledArray> slices;
    std::set<std::string> listed;  // names in infos_, for the order of first appearance
    walk_state_dict(root, p, arena_, is_array, [&](const std::string& name, const Value* v) {
      if (name.rfind(kNameTable, 0) == 0 || name.rfind(kBigParams, 0) == 0) return;
      const Value* array = v->is(Kind::kTuple) ? v->items[1] : v;  // nested saves: (name, ndarray)
      const PickledArray a = decode_pickled_ndarray(array, p + ": tensor '" + name + "'", true);
      const auto owner = slice_owner.find(name);
      if (owner != slice_owner.end()) {
        slices[name] = a;
        if (listed.insert(owner->second).second) {
          infos_.push_back(TensorInfo{owner->second, a.dtype, big[owner->second].first});
          pieces_.emplace_back();
        }
        return;
      }
      listed.insert(name);
      infos_.push_back(TensorInfo{name, a.dtype, a.shape});
      pieces_.push_back({a});
    });
    for (std::size_t i = 0; i < infos_.size(); ++i) {
      const auto it = big.find(infos_[i].name);
      if (it == big.end() || !pieces_[i].empty()) continue;
      join_slices(infos_[i], it->second.second, slices, &pieces_[i]);
    }
  }

  // The slices of a big parameter, in order: each present, of the parameter's dtype, and
  // together exactly the bytes of its declared shape (so tensor() never reads past a slice).
  void join_slices(const TensorInfo& info, const std::vector<std::string>& names,
                   const std::map<std::string, PickledArray>& slices, std::vector<PickledArray>* pieces) const {
    const std::string where = path() + ": tensor '" + info.name + "'";
    const std::optional<std::uint64_t> want = checked_tensor_bytes(info.shape, info.dtype);
    if (!want) throw Error(ErrorCode::kBadFormat, where + ": its OriginShape needs more than 2^64 bytes");
    std::uint64_t have = 0;
    for (const std::string& s : names) {
      const auto slice = slices.find(s);
      if (slice == slices.end()) throw Error(ErrorCode::kBadFormat, where + ": its slice '" + s + "' is missing");
      if (slice->second.dtype != info.dtype) {
        throw Error(ErrorCode::kBadFormat, where + ": its slice '" + s + "' has another dtype than the first");
      }
      have += slice->second.raw.size();  // each slice lies in the file: no overflow
      pieces->push_back(slice->second);
    }
    if (have != *want) {
      throw Error(ErrorCode::kBadFormat, where + ": its slices hold " + std::to_string(have) +
                                             " bytes, its OriginShape and dtype need " + std::to_string(*want));
    }
  }

  MappedFile file_;
  std::string format_ = "paddle";
  pickle::Arena arena_;  // owns decoded (protocol 2) bytes the views point into
  std::vector<TensorInfo> infos_;
  std::vector<std::vector<PickledArray>> pieces_;
  std::map<std::size_t, std::string> dense_;
};

}  // namespace

std::unique_ptr<CheckpointReader> open_paddle(const std::string& path) {
  return std::make_unique<PaddleCheckpoint>(path);
}

std::vector<std::pair<std::string, std::string>> paddle_name_table(const CheckpointReader& reader) {
  const auto* paddle = dynamic_cast<const PaddleCheckpoint*>(&reader);
  return paddle != nullptr ? paddle->name_table : std::vector<std::pair<std::string, std::string>>{};
}

bool looks_like_pickle(const std::byte* data, std::size_t size) {
  return size >= 2 && static_cast<std::uint8_t>(data[0]) == 0x80 && static_cast<std::uint8_t>(data[1]) >= 2 &&
         static_cast<std::uint8_t>(data[1]) <= 5;
}

}  // namespace wq::detail
