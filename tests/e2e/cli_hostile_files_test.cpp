// The hostile files of fuzz/regressions/ through the real wq-gpu: each one a parser defect
// that used to crash, overflow, read outside its file, succeed wrongly or exhaust memory
// (tools/make_hostile_files.py says how each is made and why). For every command of its
// manifest entry the binary must stop with the expected status (2-8 for an error), name the
// file and what is wrong, leave nothing behind, not hang, and stay within the memory rule of
// docs/input-limits.md: peak RSS at most that of a run on a small valid file plus fixed
// buffers plus a small multiple of the file's size.
#include <set>

#include "e2e/cli_support.h"

namespace wq::e2e {
namespace {

const std::string kRegressions = WQ_SOURCE_DIR "/fuzz/regressions";

// The rule's constants: the unpickler's fixed budget (32 MiB) plus the batch buffers, and its
// 96 bytes per byte of pickle (host/formats/pickle/unpickler.h), with room for the allocator.
constexpr std::uint64_t kFixedBytes = 48ull << 20;
constexpr std::uint64_t kBytesPerFileByte = 128;

// The command line of a check: the file is the input of inspect, quantize, verify and decode;
// "keep" passes its text as a --keep pattern to a quantize of `example`.
std::vector<std::string> command_args(const std::string& command, const std::string& input, const std::string& output,
                                      const std::string& example) {
  if (command == "quantize") return {"quantize", input, "-o", output, "--backend", "cpu", "-q"};
  if (command == "decode") return {"decode", input, "-o", output, "--backend", "cpu", "-q"};
  if (command == "keep") return {"quantize", example, "-o", output, "--backend", "cpu", "-q", "--keep", read_file(input)};
  return {command, input};
}

TEST_F(cli, HostileFilesFailCleanlyWithinTheMemoryRule) {
  const ojson manifest = ojson::parse(read_file(kRegressions + "/manifest.json"));
  ASSERT_GE(manifest["files"].size(), 20u);
  // Every regression file has its CLI expectations.
  std::set<std::string> listed;
  for (const ojson& entry : manifest["files"]) listed.insert(entry["file"].get<std::string>());
  for (const auto& e : fs::recursive_directory_iterator(kRegressions)) {
    if (!e.is_regular_file() || e.path().filename() == "manifest.json") continue;
    EXPECT_TRUE(listed.count(fs::relative(e.path(), kRegressions).string())) << e.path() << " is not in manifest.json";
  }

  const RunResult baseline = run({"inspect", copy_example()});
  ASSERT_EQ(baseline.status, kOk) << baseline;
  const std::uint64_t quantize_baseline = [&] {
    const RunResult r = run(command_args("quantize", dir_ / "student_net.safetensors", out("example.wq.safetensors"), ""));
    EXPECT_EQ(r.status, kOk) << r;
    return r.max_rss_bytes;
  }();

  for (const ojson& entry : manifest["files"]) {
    const std::string relative = entry["file"].get<std::string>();
    SCOPED_TRACE(relative + ": " + entry["why"].get<std::string>());
    const std::string input = dir_ / fs::path(relative).filename().string();
    fs::copy_file(kRegressions + "/" + relative, input, fs::copy_options::overwrite_existing);
    const Bytes before = read_file(input);
    for (const ojson& check : entry["checks"]) {
      const std::string command = check["command"].get<std::string>();
      SCOPED_TRACE(command);
      const std::string output = out(command == "decode" ? "decoded.safetensors" : "hostile.wq.safetensors");
      RunOptions options;
      options.timeout_s = 20;
      std::vector<std::string> args = command_args(command, input, output, dir_ / "student_net.safetensors");
      for (const ojson& flag : check["args"]) args.push_back(flag.get<std::string>());
      const RunResult r = run(args, options);
      ASSERT_FALSE(r.timed_out) << r;
      const int status = check["exit"].get<int>();
      if (status == kOk) {
        EXPECT_EQ(r.status, kOk) << r;
        if (command == "quantize" || command == "decode") fs::remove(output);
      } else {
        EXPECT_GE(status, 2);
        EXPECT_LE(status, 8);
        std::vector<std::string> mentions = {check["message"].get<std::string>()};
        if (command != "keep") mentions.push_back(input);  // a --keep pattern is named as such
        expect_clean_failure(r, status, mentions, command == "inspect" || command == "verify" ? "" : output, input,
                             &before);
      }
      const std::uint64_t base = std::max(baseline.max_rss_bytes, quantize_baseline);
      EXPECT_LE(r.max_rss_bytes, base + kFixedBytes + kBytesPerFileByte * before.size())
          << "peak RSS " << r.max_rss_bytes << " bytes for a file of " << before.size() << " bytes (a run on "
          << "the example peaks at " << base << ")\n" << r;
    }
  }
}

}  // namespace
}  // namespace wq::e2e
