// CheckpointWriter for .npz: the layout of np.savez (stored members NAME.npy with numpy's own
// version-1.0 headers). Unlike np.savez, member data is 64-byte aligned in the file (padding in
// the local header's extra field, which zip readers skip), so a reader may map it in place.
#include "formats/format_writers.h"
#include "formats/npy_format.h"
#include "formats/zip_writer.h"
#include "io/atomic_file.h"

namespace wq::detail {
namespace {

class NpzWriter final : public CheckpointWriter {
 public:
  NpzWriter(const std::string& path, const std::vector<TensorInfo>& tensors)
      : sequence_(path, tensors), file_(path), zip_(file_, 64) {
    for (const TensorInfo& t : tensors) {
      if (t.dtype == DType::kBF16) {
        throw Error(ErrorCode::kUnsupported,
                    path + ": tensor '" + t.name + "' is BF16, which numpy (.npz) has no type for; "
                    "write safetensors or pt instead, or cast it first");
      }
    }
  }

  void add(const std::byte* data) override {
    const TensorInfo& t = sequence_.next();
    const std::string header = format_npy_header(t.dtype, t.shape);
    const std::uint64_t bytes = tensor_bytes(t);
    zip_.begin_entry(t.name + ".npy", header.size() + bytes);
    zip_.write(header.data(), header.size());
    zip_.write(data, bytes);
  }

  void finish() override {
    sequence_.finish();
    zip_.finish();
    file_.commit();
  }

 private:
  TensorSequence sequence_;
  AtomicFile file_;
  ZipWriter zip_;
};

}  // namespace

std::unique_ptr<CheckpointWriter> make_npz_writer(const std::string& path, const std::vector<TensorInfo>& tensors) {
  return std::make_unique<NpzWriter>(path, tensors);
}

}  // namespace wq::detail
