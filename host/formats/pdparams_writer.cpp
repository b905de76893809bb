// CheckpointWriter for Paddle .pdparams: what paddle.save writes for a state_dict (formats.md
// §3-4): a protocol-4 pickle of a plain dict name -> numpy ndarray, then the
// "StructuredToParameterName@@" name table when there is one. BF16 tensors become uint16
// arrays, as Paddle itself converts them.
//
// Each array is pickled as numpy 1.x does at protocol 4,
//   _reconstruct(ndarray, (0,), b'b') BUILD (1, shape, dtype, False, <raw bytes>),
// and streams: the opcodes up to the raw bytes' length are written, then the tensor's bytes
// straight from add(), then the rest. Protocol 4 is Paddle's default and the only one whose
// bytes objects (BINBYTES8) can hold arrays of 4 GiB and more.
#include <array>
#include <optional>

#include "formats/format_writers.h"
#include "formats/npy_format.h"
#include "formats/pickle_emitter.h"
#include "io/atomic_file.h"

namespace wq::detail {
namespace {

constexpr const char* kNameTableKey = "StructuredToParameterName@@";
constexpr std::size_t kBatch = 1000;  // items per SETITEMS, as Python's pickler batches

class PdparamsWriter final : public CheckpointWriter {
 public:
  PdparamsWriter(const std::string& path, const std::vector<TensorInfo>& tensors, const WriterExtras& extras)
      : sequence_(path, tensors), name_table_(extras.paddle_name_table), file_(path) {
    if (!name_table_.empty()) {
      for (const TensorInfo& t : tensors) {
        if (t.name == kNameTableKey) {
          throw Error(ErrorCode::kUnsupported, path + ": a tensor is named '" + t.name +
                                                   "', the key of Paddle's name table");
        }
      }
    }
    pickle_.empty_dict();
    pickle_.memoize();
  }

  void add(const std::byte* data) override {
    const TensorInfo& t = sequence_.next();
    const std::size_t i = sequence_.index_of_last();
    if (i % kBatch == 0) pickle_.mark();
    pickle_.str(t.name);
    array_head(t);
    const std::uint64_t bytes = tensor_bytes(t);
    pickle_.bytes_header(bytes);
    flush();
    file_.write(data, bytes);
    pickle_.tuple(5).build();  // closes the state (1, shape, dtype, False, raw) and BUILDs
    if (i % kBatch == kBatch - 1 || i + 1 == sequence_.tensors().size()) pickle_.setitems();
  }

  void finish() override {
    sequence_.finish();
    if (!name_table_.empty()) {
      pickle_.mark().str(kNameTableKey).empty_dict().memoize();
      pickle_.mark();
      for (const auto& [structured, parameter] : name_table_) pickle_.str(structured).str(parameter);
      pickle_.setitems().setitems();
    }
    pickle_.stop();
    flush();
    file_.commit();
  }

 private:
  void flush() {
    const std::string opcodes = pickle_.take();
    file_.write(opcodes.data(), opcodes.size());
  }

  // Everything of an array up to its raw bytes: _reconstruct(...), MARK 1 shape dtype False.
  void array_head(const TensorInfo& t) {
    memo_or_global(reconstruct_, "numpy.core.multiarray", "_reconstruct");
    memo_or_global(ndarray_, "numpy", "ndarray");
    pickle_.integer(0).tuple(1).bytes("b").tuple(3).reduce();
    pickle_.mark().integer(1).uint_tuple(t.shape);
    auto& dtype = dtypes_[static_cast<std::size_t>(t.dtype)];
    if (dtype) {
      pickle_.get(*dtype);  // the same (already BUILT) dtype object, as Python memoizes it
    } else {
      // numpy.dtype('f4', False, True), then BUILD (3, '<', None, None, None, -1, -1, 0).
      const std::string descr = npy_descr(t.dtype);
      memo_or_global(dtype_class_, "numpy", "dtype");
      pickle_.str(descr.substr(1)).boolean(false).boolean(true).tuple(3).reduce();
      dtype = pickle_.memoize();
      pickle_.mark().integer(3).str(descr.substr(0, 1)).none().none().none();
      pickle_.integer(-1).integer(-1).integer(0).tuple(8).build();
    }
    pickle_.boolean(false);  // not Fortran order
  }

  void memo_or_global(std::optional<std::uint32_t>& memo, const char* module, const char* name) {
    if (memo) {
      pickle_.get(*memo);
    } else {
      pickle_.global(module, name);
      memo = pickle_.memoize();
    }
  }

  TensorSequence sequence_;
  std::vector<std::pair<std::string, std::string>> name_table_;
  AtomicFile file_;
  PickleEmitter pickle_{4};
  std::optional<std::uint32_t> reconstruct_, ndarray_, dtype_class_;
  std::array<std::optional<std::uint32_t>, 10> dtypes_;
};

}  // namespace

std::unique_ptr<CheckpointWriter> make_pdparams_writer(const std::string& path,
                                                       const std::vector<TensorInfo>& tensors,
                                                       const WriterExtras& extras) {
  return std::make_unique<PdparamsWriter>(path, tensors, extras);
}

}  // namespace wq::detail
