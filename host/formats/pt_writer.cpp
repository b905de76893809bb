// CheckpointWriter for PyTorch .pt: the zip layout torch.save writes (formats.md §2a), loadable
// by torch.load(weights_only=True) since torch 1.6.
//
// Records under the folder "archive/" (what torch writes when saving to a buffer): data.pkl, a
// protocol-2 pickle of an OrderedDict name -> _rebuild_tensor_v2(...) with one persistent
// storage per tensor; data/<key>, each storage's raw bytes, 64-byte aligned; version, "3\n".
// data.pkl needs only names, dtypes and shapes, so it is written first and tensor data then
// streams straight into its records.
#include <array>
#include <optional>

#include "formats/format_writers.h"
#include "formats/pickle_emitter.h"
#include "formats/zip_writer.h"
#include "io/atomic_file.h"

namespace wq::detail {
namespace {

constexpr const char* kPrefix = "archive/";
constexpr std::size_t kBatch = 1000;  // items per SETITEMS, as Python's pickler batches

const char* storage_class(DType dtype) {
  static constexpr std::array<const char*, 10> kNames{
      "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
      "IntStorage",    "ShortStorage", "CharStorage", "ByteStorage",     "BoolStorage"};
  return kNames.at(static_cast<std::size_t>(dtype));
}

// Contiguous strides in elements, as torch computes them (a 0-sized dim counts as 1).
Shape contiguous_strides(const Shape& shape) {
  Shape stride(shape.size());
  std::uint64_t step = 1;
  for (std::size_t k = shape.size(); k-- > 0;) {
    stride[k] = step;
    step *= shape[k] == 0 ? 1 : shape[k];
  }
  return stride;
}

// The data.pkl torch 1.13 writes for a state_dict of contiguous tensors, each with a storage
// of its own keyed "0", "1", ... in order. Globals and repeated strings are memoized once and
// fetched with BINGET afterwards, as Python's pickler does.
std::string state_dict_pickle(const std::vector<TensorInfo>& tensors) {
  PickleEmitter p(2);
  p.global("collections", "OrderedDict");
  const std::uint32_t ordered_dict = p.memoize();
  p.empty_tuple().reduce();
  p.memoize();
  std::optional<std::uint32_t> rebuild, storage_tag, location;
  std::array<std::optional<std::uint32_t>, 10> classes;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    if (i % kBatch == 0) p.mark();
    p.str(t.name);
    if (rebuild) {
      p.get(*rebuild);
    } else {
      p.global("torch._utils", "_rebuild_tensor_v2");
      rebuild = p.memoize();
    }
    p.mark();  // the rebuild arguments
    p.mark();  // the persistent id ('storage', torch.<X>Storage, key, 'cpu', numel)
    if (storage_tag) {
      p.get(*storage_tag);
    } else {
      p.str("storage");
      storage_tag = p.memoize();
    }
    auto& cls = classes[static_cast<std::size_t>(t.dtype)];
    if (cls) {
      p.get(*cls);
    } else {
      p.global("torch", storage_class(t.dtype));
      cls = p.memoize();
    }
    p.str(std::to_string(i));
    if (location) {
      p.get(*location);
    } else {
      p.str("cpu");
      location = p.memoize();
    }
    p.uinteger(element_count(t.shape));
    p.tuple(5).binpersid();
    p.integer(0);  // storage offset
    p.uint_tuple(t.shape).uint_tuple(contiguous_strides(t.shape));
    p.boolean(false);  // requires_grad
    p.get(ordered_dict).empty_tuple().reduce();  // backward_hooks = OrderedDict()
    p.tuple(6).reduce();
    if (i % kBatch == kBatch - 1 || i + 1 == tensors.size()) p.setitems();
  }
  p.stop();
  return p.take();
}

class PtWriter final : public CheckpointWriter {
 public:
  PtWriter(const std::string& path, const std::vector<TensorInfo>& tensors)
      : sequence_(path, tensors), file_(path), zip_(file_, 64) {
    const std::string pickle = state_dict_pickle(tensors);
    zip_.begin_entry(std::string(kPrefix) + "data.pkl", pickle.size());
    zip_.write(pickle.data(), pickle.size());
  }

  void add(const std::byte* data) override {
    const TensorInfo& t = sequence_.next();
    const std::uint64_t bytes = tensor_bytes(t);
    zip_.begin_entry(std::string(kPrefix) + "data/" + std::to_string(sequence_.index_of_last()), bytes);
    zip_.write(data, bytes);
  }

  void finish() override {
    sequence_.finish();
    zip_.begin_entry(std::string(kPrefix) + "version", 2);
    zip_.write("3\n", 2);
    zip_.finish();
    file_.commit();
  }

 private:
  TensorSequence sequence_;
  AtomicFile file_;
  ZipWriter zip_;
};

}  // namespace

std::unique_ptr<CheckpointWriter> make_pt_writer(const std::string& path, const std::vector<TensorInfo>& tensors) {
  return std::make_unique<PtWriter>(path, tensors);
}

}  // namespace wq::detail
