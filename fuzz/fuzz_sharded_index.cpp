// A sharded safetensors checkpoint through wq::open_checkpoint(): an index and its shards.
//
// The input is split at the separator kSeparator (at most three times):
//
//     INDEX_JSON [SEP SHARD_1 [SEP SHARD_2 [SEP SHARD_3]]]
//
// INDEX_JSON becomes model.safetensors.index.json and SHARD_k becomes
// model-0000k-of-00003.safetensors beside it (a separator inside shard 3 stays in it); shards
// the input does not give are removed, so an index naming them finds them missing. A plain
// separator rather than lengths (or FuzzedDataProvider) keeps the parts where they are when
// the fuzzer inserts or removes bytes, and lets tools/make_fuzz_corpus.py write seeds as a
// plain concatenation.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"

namespace {

constexpr std::string_view kSeparator = "\n--wq-shard--\n";
constexpr std::array<std::string_view, 3> kShardNames = {
    "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  wq::fuzz::Scratch& scratch = wq::fuzz::Scratch::get();
  static const std::string index_path = scratch.path("model.safetensors.index.json");
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::size_t end = input.find(kSeparator);
  wq::fuzz::write_file(index_path, input.data(), end == std::string_view::npos ? input.size() : end);
  for (std::size_t k = 0; k < kShardNames.size(); ++k) {
    const std::string path = scratch.path(kShardNames[k]);
    if (end == std::string_view::npos) {
      wq::fuzz::remove_file(path);
      continue;
    }
    const std::size_t begin = end + kSeparator.size();
    end = k + 1 < kShardNames.size() ? input.find(kSeparator, begin) : std::string_view::npos;
    const std::size_t stop = end == std::string_view::npos ? input.size() : end;
    wq::fuzz::write_file(path, input.data() + begin, stop - begin);
  }
  wq::fuzz::exercise_checkpoint(index_path, size);
  return 0;
}
