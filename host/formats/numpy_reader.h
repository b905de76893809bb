// Readers of numpy's .npy (one array) and .npz (a zip of .npy members) files (formats.md §5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "wq/checkpoint.h"

namespace wq::detail {

/// Opens an .npy file as a checkpoint of one tensor named after the file's stem ("w.npy" ->
/// "w"), format "npy". A C-order little-endian array is a zero-copy view into the mapped file;
/// Fortran-order or big-endian data is converted into a buffer the reader owns, made by
/// tensor(0) and freed by release(0). Throws Error(kInputMissing) when the file cannot be
/// opened, Error(kBadFormat) for a malformed or truncated file, Error(kUnsupported) for numpy
/// dtypes wq has no type for (uint16 and wider unsigned, complex, object, structured...).
std::unique_ptr<CheckpointReader> open_npy(const std::string& path);

/// Opens an .npz archive (np.savez: stored; np.savez_compressed: deflated; zip64 either way)
/// as a checkpoint, format "npz", whose tensors are the members "NAME.npy", named NAME, in
/// archive order. Only headers are read here; tensor(i) reads (and inflates) member i into a
/// buffer the reader owns, checking its CRC, and release(i) frees it, so memory holds about
/// one tensor at a time. Errors as open_npy, naming the archive and the member; a member that
/// is not an .npy array is Error(kUnsupported). Not thread-safe.
std::unique_ptr<CheckpointReader> open_npz(const std::string& path);

/// True when the bytes start with the .npy magic ("\x93NUMPY").
bool sniff_npy(const std::byte* data, std::uint64_t size) noexcept;

/// True when `path` is a zip archive whose first member's name ends in ".npy" (np.savez's
/// layout); false for anything else, torch's zip checkpoints included. Never throws.
bool sniff_npz(const std::string& path) noexcept;

}  // namespace wq::detail
