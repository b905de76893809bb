// The CheckpointWriter of each output format (one .cpp each), and the bookkeeping they share.
// Callers use make_checkpoint_writer() (checkpoint_writer.h); these are its table.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "formats/checkpoint_writer.h"
#include "wq/error.h"

namespace wq::detail {

/// safetensors with metadata {"format": "pt"}.
std::unique_ptr<CheckpointWriter> make_safetensors_checkpoint_writer(const std::string& path,
                                                                     const std::vector<TensorInfo>& tensors);
/// np.savez's layout: stored members NAME.npy (refuses BF16: numpy has no such type).
std::unique_ptr<CheckpointWriter> make_npz_writer(const std::string& path, const std::vector<TensorInfo>& tensors);
/// torch.save's zip layout (torch 1.13 records, protocol-2 data.pkl).
std::unique_ptr<CheckpointWriter> make_pt_writer(const std::string& path, const std::vector<TensorInfo>& tensors);
/// paddle.save's pickle (protocol 4) of a dict of numpy arrays, BF16 as uint16.
std::unique_ptr<CheckpointWriter> make_pdparams_writer(const std::string& path,
                                                       const std::vector<TensorInfo>& tensors,
                                                       const WriterExtras& extras);

/// Which tensor add() receives next, and whether finish() came after all of them.
class TensorSequence {
 public:
  TensorSequence(const std::string& path, const std::vector<TensorInfo>& tensors)
      : path_(path), tensors_(tensors) {}

  /// The tensor whose data add() was just given, with its index.
  const TensorInfo& next() {
    if (finished_ || next_ >= tensors_.size()) {
      throw Error(ErrorCode::kInternal, path_ + ": more tensors added than the " +
                                            std::to_string(tensors_.size()) + " announced");
    }
    return tensors_[next_++];
  }
  std::size_t index_of_last() const noexcept { return next_ - 1; }
  /// Call at the start of finish().
  void finish() {
    if (finished_ || next_ != tensors_.size()) {
      throw Error(ErrorCode::kInternal, path_ + ": finished after " + std::to_string(next_) + " of " +
                                            std::to_string(tensors_.size()) + " tensors");
    }
    finished_ = true;
  }
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }

 private:
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::size_t next_ = 0;
  bool finished_ = false;
};

/// Bytes of a tensor's dense data.
inline std::uint64_t tensor_bytes(const TensorInfo& t) { return element_count(t.shape) * dtype_size(t.dtype); }

}  // namespace wq::detail
