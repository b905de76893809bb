// The hostile files of fuzz/regressions/ read in-process through the public API, as the
// fuzz targets read them: every one is refused with a wq::Error naming the file, or read
// without touching a byte outside it (the sanitizer build runs this suite, so an out-of-bounds
// read, a leak or an overflow is a failure here, not only in the fuzzers). The CLI's side of
// the same files is tests/e2e/cli_hostile_files_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/file_support.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq {
namespace {

const std::string kRegressions = std::string(WQ_SOURCE_DIR) + "/fuzz/regressions";

// Every byte of every tensor, folded so that no read is optimised away.
std::uint64_t touch(const TensorView& view) {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < view.nbytes(); ++i) sum = sum * 31 + static_cast<std::uint8_t>(view.data[i]);
  return sum;
}

// Opens `path` and reads every tensor twice, retrying one that failed; returns the first
// error's message, or "" when everything could be read.
std::string read_everything(const std::string& path) {
  std::string first_error;
  try {
    if (is_wq_container(path)) {
      std::unique_ptr<ContainerReader> c = ContainerReader::open(path);
      for (std::size_t i = 0; i < c->tensors().size(); ++i) c->verify(i);
      return "";
    }
    std::unique_ptr<CheckpointReader> r = open_checkpoint(path);
    for (std::size_t i = 0; i < r->tensors().size(); ++i) {
      for (int attempt = 0; attempt < 2; ++attempt) {
        try {
          touch(r->tensor(i));
          r->release(i);
        } catch (const Error& e) {
          if (first_error.empty()) first_error = e.what();
        }
      }
    }
  } catch (const Error& e) {
    if (first_error.empty()) first_error = e.what();
  }
  return first_error;
}

TEST(HostileFiles, EveryRegressionFileIsAnErrorNamingItOrReadInBounds) {
  const nlohmann::json manifest = nlohmann::json::parse(test::read_bytes(kRegressions + "/manifest.json"));
  ASSERT_GE(manifest["files"].size(), 20u);
  for (const nlohmann::json& entry : manifest["files"]) {
    if (entry["file"].get<std::string>().rfind("fuzz_rules/", 0) == 0) continue;  // CLI rules, not a file format
    const std::string path = kRegressions + "/" + entry["file"].get<std::string>();
    SCOPED_TRACE(path);
    const std::string error = read_everything(path);
    bool fails = false;  // with the default options (some checks add flags that lower a limit)
    for (const nlohmann::json& check : entry["checks"]) {
      fails = fails || (check["exit"].get<int>() != 0 && check["args"].empty());
    }
    if (fails) {
      EXPECT_NE(error, "") << "read without an error";
      EXPECT_NE(error.find(path), std::string::npos) << error;
    }
  }
}

// A tensor whose storage cannot be read fails the same way when it is asked for again: the
// failed read keeps nothing (it used to keep an empty buffer and return a view of it).
TEST(HostileFiles, AFailedTensorFailsAgainWhenRetried) {
  const std::string path = kRegressions + "/fuzz_torch_zip/corrupt_deflated_storage.pt";
  std::unique_ptr<CheckpointReader> r = open_checkpoint(path);
  ASSERT_EQ(r->tensors().size(), 1u);
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      r->tensor(0);
      ADD_FAILURE() << "attempt " << attempt << " returned a view";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
      EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    }
  }
  r->release(0);  // never handed out: nothing to release, and no error
}

}  // namespace
}  // namespace wq
