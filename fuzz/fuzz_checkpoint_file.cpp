// One checkpoint file through wq::open_checkpoint(): fuzz_safetensors, fuzz_torch_zip,
// fuzz_torch_legacy, fuzz_pdparams, fuzz_npy and fuzz_npz are this source, each built with the
// file name its format is saved under (WQ_FUZZ_FILE_NAME). wq recognises formats by content,
// never by name, so every target reaches every reader; what makes each one focus on its own
// format is its seed corpus and dictionary (fuzz/corpus/<target>/, fuzz/dict/<target>.dict).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"

#ifndef WQ_FUZZ_FILE_NAME
#error "WQ_FUZZ_FILE_NAME must name the file the input is written to (e.g. \"model.pt\")"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = wq::fuzz::Scratch::get().path(WQ_FUZZ_FILE_NAME);
  wq::fuzz::write_file(path, data, size);
  wq::fuzz::exercise_checkpoint(path, size);
  return 0;
}
