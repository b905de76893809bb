// End-to-end: tree mode of `wq-gpu quantize` (folders in, a mirrored folder out), its journal
// and resume after SIGKILL/SIGINT, --shard and the Slurm environment, rules and --dry-run.
#include <chrono>
#include <map>
#include <set>

#include "e2e/cli_support.h"

namespace wq::e2e {
namespace {

const std::string kFixtures = WQ_TEST_DATA_DIR "/fixtures";

/// Every regular file under `root` (relative path -> bytes), journals excluded.
std::map<std::string, Bytes> tree_bytes(const std::string& root) {
  std::map<std::string, Bytes> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.rfind(".wq-journal", 0) == 0) continue;
    files[fs::relative(e.path(), root).generic_string()] = read_file(e.path().string());
  }
  return files;
}

std::vector<std::string> names_of(const std::map<std::string, Bytes>& files) {
  std::vector<std::string> names;
  for (const auto& [name, bytes] : files) names.push_back(name);
  return names;
}

/// Temporary files anywhere under `root`.
std::vector<std::string> temps_under(const std::string& root) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.path().filename().string().find(".wq-tmp.") != std::string::npos) found.push_back(e.path().string());
  }
  return found;
}

std::string f32_tensor_json(const std::string& name, std::uint64_t rows, std::uint64_t cols, std::uint64_t offset) {
  return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(rows) + "," + std::to_string(cols) +
         "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + rows * cols * 4) + "]}";
}

Bytes ramp(std::size_t n, float step) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 37) * step - 0.3f;
  return f32_bytes(v);
}

/// A safetensors file of 2-d F32 tensors (name, rows, cols) filled with ramps.
void write_f32_safetensors(const std::string& path, const std::vector<std::tuple<std::string, int, int>>& tensors) {
  std::string header = "{";
  Bytes data;
  for (const auto& [name, rows, cols] : tensors) {
    if (header.size() > 1) header += ",";
    header += f32_tensor_json(name, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), data.size());
    data += ramp(static_cast<std::size_t>(rows * cols), 0.01f * static_cast<float>(cols));
  }
  write_safetensors(path, header + "}", data);
}

class cli_tree : public cli {
 protected:
  /// The tree of the issue: nested folders, a sharded checkpoint, a .pt, an .npz, a .pdparams,
  /// a safetensors file, config.json and a README, and a link out of the tree.
  void SetUp() override {
    cli::SetUp();
    in_ = dir_ / "model";
    fs::create_directories(in_ + "/sub/deep");
    fs::create_directories(in_ + "/sharded");
    fs::copy_file(kExample, in_ + "/student_net.safetensors");
    fs::copy_file(kFixtures + "/tiny_legacy.pt", in_ + "/sub/model.pt");
    fs::copy_file(kFixtures + "/tiny.npz", in_ + "/sub/deep/arrays.npz");
    fs::copy_file(kFixtures + "/tiny_p2.pdparams", in_ + "/sub/deep/params.pdparams");
    write_file(in_ + "/config.json", "{\"hidden_size\": 16}\n");
    write_file(in_ + "/sub/README.md", "# a model\n");
    write_f32_safetensors(in_ + "/sharded/model-00001-of-00002.safetensors", {{"a.weight", 8, 16}, {"a.proj", 4, 16}});
    write_f32_safetensors(in_ + "/sharded/model-00002-of-00002.safetensors", {{"b.weight", 4, 32}});
    write_file(in_ + "/sharded/model.safetensors.index.json",
               R"({"metadata": {"total_size": 896}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", )"
               R"("a.proj": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}})");
    fs::create_symlink("/etc/hostname", in_ + "/outside-link");
    input_before_ = tree_bytes(in_);
  }

  std::vector<std::string> quantize_args(const std::string& output, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"quantize", in_, "-o", output, "--backend", "cpu", "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  /// A clean, uninterrupted run into `output`, one file at a time (the other tests run with
  /// the default, which is two jobs with --threads 2); returns its files.
  std::map<std::string, Bytes> clean_run(const std::string& output) {
    const RunResult r = run(quantize_args(output, {"-q", "--jobs", "1"}));
    EXPECT_EQ(r.status, kOk) << r;
    return tree_bytes(output);
  }

  void expect_input_unchanged() { EXPECT_TRUE(tree_bytes(in_) == input_before_) << "the input tree was modified"; }

  std::string in_;
  std::map<std::string, Bytes> input_before_;
};

TEST_F(cli_tree, MirrorsTheTreeCompletely) {
  const std::string output = dir_ / "model-wq";
  const RunResult r = run(quantize_args(output));
  ASSERT_EQ(r.status, kOk) << r;
  const std::map<std::string, Bytes> files = tree_bytes(output);
  const std::vector<std::string> expected = {
      "config.json",
      "sharded/model-00001-of-00002.wq.safetensors",
      "sharded/model-00002-of-00002.wq.safetensors",
      "sharded/model.wq.safetensors.index.json",
      "student_net.wq.safetensors",
      "sub/README.md",
      "sub/deep/arrays.wq.safetensors",
      "sub/deep/params.wq.safetensors",
      "sub/model.wq.safetensors",
  };
  EXPECT_EQ(names_of(files), expected) << r;
  // Other files are copied byte for byte; the link out of the tree is not followed.
  EXPECT_EQ(files.at("config.json"), input_before_.at("config.json"));
  EXPECT_EQ(files.at("sub/README.md"), input_before_.at("sub/README.md"));
  EXPECT_TRUE(contains(r.err, "outside-link")) << r;
  // The rewritten index names the containers; the shards were not also quantized one by one.
  const ojson index = ojson::parse(files.at("sharded/model.wq.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"]["b.weight"], "model-00002-of-00002.wq.safetensors");
  EXPECT_EQ(index["metadata"]["total_size"].get<std::uint64_t>(),
            files.at("sharded/model-00001-of-00002.wq.safetensors").size() +
                files.at("sharded/model-00002-of-00002.wq.safetensors").size());
  // The report lists every file, with totals.
  for (const std::string& name : expected) EXPECT_TRUE(contains(r.out, name)) << name << "\n" << r;
  EXPECT_TRUE(contains(r.out, "total: 9 files")) << r;
  // Every container passes verify; nothing temporary is left; the input is untouched.
  const RunResult v = run({"verify", output});
  EXPECT_EQ(v.status, kOk) << v;
  EXPECT_TRUE(contains(v.out, "6 containers checked, 0 bad")) << v;
  EXPECT_EQ(temps_under(output), std::vector<std::string>{});
  expect_input_unchanged();
}

TEST_F(cli_tree, ContainersAreTheSameAsOneFileAtATime) {
  // Tree mode adds nothing to the bytes: each container equals the one-file command's.
  const std::string output = dir_ / "model-wq";
  clean_run(output);
  const std::string single = out("student_net.wq.safetensors");
  quantize_ok(in_ + "/student_net.safetensors", single);
  EXPECT_TRUE(read_file(single) == read_file(output + "/student_net.wq.safetensors"));
  const std::string index = out("model.wq.safetensors.index.json");
  quantize_ok(in_ + "/sharded/model.safetensors.index.json", index);
  EXPECT_TRUE(read_file(index) == read_file(output + "/sharded/model.wq.safetensors.index.json"));
}

TEST_F(cli_tree, RerunIsUpToDateAndChangesNothing) {
  const std::string output = dir_ / "model-wq";
  const std::map<std::string, Bytes> first = clean_run(output);
  std::map<std::string, fs::file_time_type> mtimes;
  for (const auto& [name, bytes] : first) mtimes[name] = fs::last_write_time(output + "/" + name);
  const std::string journal = read_file(output + "/.wq-journal.jsonl");

  const RunResult again = run(quantize_args(output));
  ASSERT_EQ(again.status, kOk) << again;
  EXPECT_TRUE(contains(again.out, "0 written, 9 up to date")) << again;
  EXPECT_TRUE(contains(again.err, "up to date")) << again;
  EXPECT_TRUE(tree_bytes(output) == first);
  for (const auto& [name, when] : mtimes) EXPECT_EQ(fs::last_write_time(output + "/" + name), when) << name;
  EXPECT_EQ(read_file(output + "/.wq-journal.jsonl"), journal);

  // A changed input, or other settings, are redone; --force redoes everything.
  write_file(in_ + "/config.json", "{\"hidden_size\": 32}\n");
  const RunResult changed = run(quantize_args(output));
  ASSERT_EQ(changed.status, kOk) << changed;
  EXPECT_TRUE(contains(changed.out, "1 written, 8 up to date")) << changed;
  EXPECT_EQ(read_file(output + "/config.json"), "{\"hidden_size\": 32}\n");
  const RunResult bits = run(quantize_args(output, {"--bits", "4"}));
  ASSERT_EQ(bits.status, kOk) << bits;
  EXPECT_TRUE(contains(bits.out, "7 written, 2 up to date")) << bits;  // copies do not depend on --bits
  const RunResult forced = run(quantize_args(output, {"--bits", "4", "--force"}));
  ASSERT_EQ(forced.status, kOk) << forced;
  EXPECT_TRUE(contains(forced.out, "9 written, 0 up to date")) << forced;
}

TEST_F(cli_tree, AnInputTouchedButUnchangedIsUpToDateByItsChecksum) {
  const std::string output = dir_ / "model-wq";
  ASSERT_EQ(run(quantize_args(output, {"-q"})).status, kOk);
  // A new mtime, the same bytes (a copy without -p, a checkout): the journal's XXH3 of the
  // input decides, for a file of one batch and for a sharded checkpoint's shard.
  const auto later = fs::file_time_type::clock::now() + std::chrono::hours(1);
  for (const char* name : {"student_net.safetensors", "sub/model.pt", "sharded/model-00002-of-00002.safetensors"}) {
    fs::last_write_time(in_ + "/" + name, later);
  }
  const RunResult touched = run(quantize_args(output));
  ASSERT_EQ(touched.status, kOk) << touched;
  EXPECT_TRUE(contains(touched.out, "0 written, 9 up to date")) << touched;
  // The same size and a new mtime, but other bytes: redone.
  Bytes bytes = read_file(in_ + "/student_net.safetensors");
  bytes.back() = static_cast<char>(bytes.back() ^ 1);
  write_file(in_ + "/student_net.safetensors", bytes);
  const RunResult changed = run(quantize_args(output));
  ASSERT_EQ(changed.status, kOk) << changed;
  EXPECT_TRUE(contains(changed.out, "1 written, 8 up to date")) << changed;
}

TEST_F(cli_tree, SigkillAnywhereThenRerunGivesTheCleanBytes) {
  const std::map<std::string, Bytes> clean = clean_run(dir_ / "clean");
  // Deterministic crash points (a container half written, an output renamed but not yet
  // journaled, just after a journal line), then kills after a few milliseconds.
  std::vector<RunOptions> kills;
  for (const char* point : {"temp:1", "temp:3", "output:1", "output:4", "journal:1", "journal:5"}) {
    RunOptions o;
    o.env = {std::string("WQ_TEST_CRASH=") + point};
    kills.push_back(o);
  }
  for (const int ms : {2, 10, 25, 50}) {
    RunOptions o;
    o.kill_after_ms = ms;
    kills.push_back(o);
  }
  int n = 0;
  for (const RunOptions& kill : kills) {
    SCOPED_TRACE(kill.env.empty() ? "kill after " + std::to_string(*kill.kill_after_ms) + " ms" : kill.env[0]);
    const std::string output = dir_ / ("killed" + std::to_string(++n));
    const RunResult killed = run(quantize_args(output, {"-q"}), kill);
    if (!kill.env.empty()) {
      EXPECT_EQ(killed.status, 128 + SIGKILL) << killed;
    }
    // Whatever is visible is complete: every container verifies, every copy is whole.
    if (fs::exists(output)) {
      for (const auto& [name, bytes] : tree_bytes(output)) {
        if (name.find(".wq-tmp.") != std::string::npos) continue;  // hidden leftovers
        EXPECT_TRUE(clean.count(name) == 1 && clean.at(name) == bytes) << name << " is partial";
      }
    }
    const RunResult rerun = run(quantize_args(output, {"-q"}));
    ASSERT_EQ(rerun.status, kOk) << rerun;
    EXPECT_TRUE(tree_bytes(output) == clean) << "the resumed tree differs from a clean run";
    EXPECT_EQ(temps_under(output), std::vector<std::string>{});
  }
  expect_input_unchanged();
}

TEST_F(cli_tree, ATornJournalLineIsIgnored) {
  // A kill in the middle of an append leaves half a line: it means "not done", and the next
  // append starts on a line of its own.
  const std::string output = dir_ / "model-wq";
  const std::map<std::string, Bytes> clean = clean_run(output);
  const std::string journal = output + "/.wq-journal.jsonl";
  std::istringstream lines(read_file(journal));
  std::string first_line;
  std::getline(lines, first_line);
  fs::remove(output + "/config.json");
  {
    std::ofstream append(journal, std::ios::app | std::ios::binary);
    append << first_line.substr(0, first_line.size() / 2);
  }
  const RunResult r = run(quantize_args(output));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(r.out, "1 written, 8 up to date")) << r;
  EXPECT_TRUE(tree_bytes(output) == clean);
  const RunResult again = run(quantize_args(output));
  EXPECT_TRUE(contains(again.out, "0 written, 9 up to date")) << again;
}

TEST_F(cli_tree, CtrlCStopsCleanlyAndTellsHowToResume) {
  const std::map<std::string, Bytes> clean = clean_run(dir_ / "clean");
  const std::string output = dir_ / "model-wq";
  RunOptions interrupt;
  interrupt.env = {"WQ_TEST_CRASH=journal:2:int"};
  const RunResult r = run(quantize_args(output), interrupt);
  EXPECT_EQ(r.status, 130) << r;
  EXPECT_TRUE(contains(r.err, "interrupted")) << r;
  EXPECT_TRUE(contains(r.err, "run the same command again to resume")) << r;
  EXPECT_EQ(temps_under(output), std::vector<std::string>{});
  const RunResult rerun = run(quantize_args(output));
  ASSERT_EQ(rerun.status, kOk) << rerun;
  EXPECT_TRUE(contains(rerun.out, "up to date")) << rerun;
  EXPECT_TRUE(tree_bytes(output) == clean);
}

TEST_F(cli_tree, ShardsTogetherMakeTheCleanRunExactlyOnce) {
  const std::map<std::string, Bytes> clean = clean_run(dir_ / "clean");
  const std::string output = dir_ / "sharded-run";
  const RunResult first = run(quantize_args(output, {"--shard", "0/2", "-q"}));
  ASSERT_EQ(first.status, kOk) << first;
  const std::size_t after_first = tree_bytes(output).size();
  RunOptions slurm;
  slurm.env = {"SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_TASK_COUNT=2"};
  const RunResult second = run(quantize_args(output, {"-q"}), slurm);
  ASSERT_EQ(second.status, kOk) << second;
  EXPECT_TRUE(tree_bytes(output) == clean);
  EXPECT_GT(after_first, 0u);
  EXPECT_LT(after_first, clean.size());
  // Each output was written by exactly one of them.
  std::multiset<std::string> written;
  for (const char* journal : {"/.wq-journal.shard-0-of-2.jsonl", "/.wq-journal.shard-1-of-2.jsonl"}) {
    std::istringstream lines(read_file(output + journal));
    for (std::string line; std::getline(lines, line);) written.insert(ojson::parse(line)["output"].get<std::string>());
  }
  EXPECT_EQ(written.size(), clean.size());
  EXPECT_EQ(std::set<std::string>(written.begin(), written.end()).size(), clean.size());
  // Kubernetes Indexed Jobs: JOB_COMPLETION_INDEX with WQ_SHARD_COUNT.
  const std::string k8s = dir_ / "k8s-run";
  for (const char* index : {"0", "1", "2"}) {
    RunOptions job;
    job.env = {std::string("JOB_COMPLETION_INDEX=") + index, "WQ_SHARD_COUNT=3"};
    const RunResult r = run(quantize_args(k8s, {"-q"}), job);
    ASSERT_EQ(r.status, kOk) << r;
  }
  EXPECT_TRUE(tree_bytes(k8s) == clean);
  // A malformed shard is a usage error.
  const RunResult bad = run(quantize_args(dir_ / "bad", {"--shard", "2/2"}));
  EXPECT_EQ(bad.status, kUsage) << bad;
  EXPECT_FALSE(fs::exists(dir_ / "bad"));
}

TEST_F(cli_tree, JobsInParallelGiveTheSameTreeAndResume) {
  const std::map<std::string, Bytes> clean = clean_run(dir_ / "clean");
  const std::string output = dir_ / "parallel";
  const RunResult r = run(quantize_args(output, {"--jobs", "3"}));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(tree_bytes(output) == clean);
  EXPECT_TRUE(contains(r.out, "9 written, 0 up to date")) << r;
  // The default (--jobs 0: here two jobs, one per --threads) too.
  const std::string by_default = dir_ / "parallel-default";
  const RunResult d = run(quantize_args(by_default, {"--jobs", "0"}));
  ASSERT_EQ(d.status, kOk) << d;
  EXPECT_TRUE(tree_bytes(by_default) == clean);
  // The report keeps the tree's order whatever order the jobs finished in.
  EXPECT_LT(d.out.find("config.json"), d.out.find("student_net.wq.safetensors")) << d;
  EXPECT_LT(d.out.find("student_net.wq.safetensors"), d.out.find("sub/README.md")) << d;
  // Killed with three files in flight, then resumed.
  const std::string killed_output = dir_ / "parallel-killed";
  RunOptions kill;
  kill.env = {"WQ_TEST_CRASH=journal:4"};
  const RunResult killed = run(quantize_args(killed_output, {"--jobs", "3", "-q"}), kill);
  EXPECT_EQ(killed.status, 128 + SIGKILL) << killed;
  const RunResult rerun = run(quantize_args(killed_output, {"--jobs", "3", "-q"}));
  ASSERT_EQ(rerun.status, kOk) << rerun;
  EXPECT_TRUE(tree_bytes(killed_output) == clean);
  EXPECT_EQ(temps_under(killed_output), std::vector<std::string>{});
}

// Large files take paths of their own: a file of several batches reads the tensors it
// quantizes with pread() (pipeline/input_staging.h), and with several jobs a file of 64 MiB or
// more is fsynced and renamed on a thread of its own while its job goes on
// (TreeRun::deferred_commit()). Their parts are the bytes of each tensor quantized from a file
// of its own (one batch, read through the mapping), one job gives the same tree, and a kill at
// each crash point of the deferred commit, then a rerun, gives it too.
TEST_F(cli, LargeFilesGiveTheBytesOfTheirTensorsAloneAndResume) {
  const std::string in = dir_ / "large", alone = dir_ / "alone";
  fs::create_directories(in);
  fs::create_directories(alone);
  const std::vector<std::tuple<std::string, int, int>> a = {{"x.weight", 2048, 4224}, {"y.weight", 2112, 4096}};
  const std::vector<std::tuple<std::string, int, int>> b = {{"z.weight", 4096, 2112}, {"w.weight", 1, 7}};
  write_f32_safetensors(in + "/a.safetensors", a);
  write_f32_safetensors(in + "/b.safetensors", b);
  ASSERT_GT(fs::file_size(in + "/a.safetensors"), 64u << 20);
  ASSERT_GT(fs::file_size(in + "/b.safetensors"), 16u << 20);  // several batches
  const auto args = [&](const std::string& output, std::vector<std::string> extra, bool quiet = true) {
    std::vector<std::string> v{"quantize", in, "-o", output, "--backend", "cpu", "--threads", "2"};
    if (quiet) v.push_back("-q");
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  const std::string output = dir_ / "large-wq";
  const RunResult r = run(args(output, {"--jobs", "2"}));
  ASSERT_EQ(r.status, kOk) << r;
  const std::map<std::string, Bytes> tree = tree_bytes(output);
  for (const auto& [file, tensors] : {std::pair{std::string("a"), a}, std::pair{std::string("b"), b}}) {
    const Safetensors whole = parse_safetensors(tree.at(file + ".wq.safetensors"));
    for (const auto& t : tensors) {
      const std::string name = std::get<0>(t), one = alone + "/" + name + ".safetensors";
      write_f32_safetensors(one, {t});
      quantize_ok(one, alone + "/" + name + ".wq.safetensors");
      const Safetensors single = parse_safetensors(read_file(alone + "/" + name + ".wq.safetensors"));
      for (const std::string& part : single.tensor_names()) {
        EXPECT_EQ(whole.tensor_data(part), single.tensor_data(part)) << file << ": " << part;
      }
    }
  }
  const RunResult one_job = run(args(dir_ / "one-job", {"--jobs", "1"}));
  ASSERT_EQ(one_job.status, kOk) << one_job;
  EXPECT_TRUE(tree_bytes(dir_ / "one-job") == tree);
  // The journal's input checksums, hashed from the staged reads, are the whole files': touched
  // inputs with the same bytes are up to date (the rerun hashes them on its own).
  const auto later = fs::file_time_type::clock::now() + std::chrono::hours(1);
  for (const char* name : {"/a.safetensors", "/b.safetensors"}) fs::last_write_time(in + name, later);
  const RunResult touched = run(args(output, {"--jobs", "2"}, false));
  ASSERT_EQ(touched.status, kOk) << touched;
  EXPECT_TRUE(contains(touched.out, "0 written, 2 up to date")) << touched;
  int n = 0;
  for (const char* point : {"output:1", "output:2", "journal:1"}) {
    SCOPED_TRACE(point);
    const std::string killed_output = dir_ / ("killed" + std::to_string(++n));
    RunOptions kill;
    kill.env = {std::string("WQ_TEST_CRASH=") + point};
    const RunResult killed = run(args(killed_output, {"--jobs", "2"}), kill);
    EXPECT_EQ(killed.status, 128 + SIGKILL) << killed;
    const RunResult rerun = run(args(killed_output, {"--jobs", "2"}));
    ASSERT_EQ(rerun.status, kOk) << rerun;
    EXPECT_TRUE(tree_bytes(killed_output) == tree);
    EXPECT_EQ(temps_under(killed_output), std::vector<std::string>{});
  }
}

TEST_F(cli_tree, DevicesGiveOneJobEachAndTheSameTree) {
  // With the CPU backend the ordinals choose nothing, but --devices still sets the jobs.
  const std::map<std::string, Bytes> clean = clean_run(dir_ / "clean");
  const std::string output = dir_ / "devices";
  const RunResult r = run(quantize_args(output, {"--devices", "0,1"}));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(tree_bytes(output) == clean);
  EXPECT_TRUE(contains(r.out, "9 written, 0 up to date")) << r;
}

TEST_F(cli_tree, AnUnreadableCheckpointFailsBeforeAnythingIsWritten) {
  // Looks like safetensors (by content), but its header runs past the end.
  write_file(in_ + "/sub/broken.safetensors", u64_le(1000) + "{\"w\":");
  const std::string output = dir_ / "model-wq";
  const RunResult r = run(quantize_args(output));
  expect_clean_failure(r, kBadFormat, {"broken.safetensors"}, "");
  EXPECT_FALSE(fs::exists(output)) << r;
}

TEST_F(cli_tree, UnreadablePicklesFailTheRunOrAreCopiedOnRequest) {
  // What pickle.dump(TrainingArguments(), f, protocol=2) writes: a pickle, but of an object the
  // restricted unpickler refuses to build (Hugging Face's training_args.bin is such a file).
  const std::string pickled("\x80\x02" "c__main__\nTrainingArguments\nq\x00)\x81q\x01.", 37);
  write_file(in_ + "/training_args.bin", pickled);
  const std::string output = dir_ / "model-wq";
  const RunResult refused = run(quantize_args(output));
  expect_clean_failure(refused, kBadFormat, {"training_args.bin", "--copy-unreadable"}, "");
  EXPECT_FALSE(fs::exists(output)) << refused;

  const RunResult copied = run(quantize_args(output, {"--copy-unreadable"}));
  ASSERT_EQ(copied.status, kOk) << copied;
  EXPECT_TRUE(read_file(output + "/training_args.bin") == pickled);
  EXPECT_TRUE(contains(copied.err, "training_args.bin: not readable as a checkpoint, copied unchanged")) << copied;
  const RunResult again = run(quantize_args(output, {"--copy-unreadable"}));
  ASSERT_EQ(again.status, kOk) << again;
  EXPECT_TRUE(contains(again.out, "0 written")) << again;
}

TEST_F(cli_tree, GitDataAndOurLeftoversAreNotInputs) {
  fs::create_directories(in_ + "/.git/objects");
  write_file(in_ + "/.git/objects/blob", "history");
  write_file(in_ + "/.gitattributes", "*.safetensors filter=lfs\n");
  write_file(in_ + "/.wq-journal.jsonl", "{}\n");                      // a journal ...
  write_file(in_ + "/sub/.model.wq.safetensors.wq-tmp.AbC123", "half");  // ... and a temporary
  const std::string output = dir_ / "model-wq";
  const RunResult r = run(quantize_args(output));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_FALSE(fs::exists(output + "/.git")) << r;
  EXPECT_TRUE(fs::exists(output + "/.gitattributes")) << r;
  EXPECT_FALSE(fs::exists(output + "/sub/.model.wq.safetensors.wq-tmp.AbC123")) << r;
  EXPECT_TRUE(contains(r.out, "total: 10 files")) << r;  // the 9 of the tree and .gitattributes
  EXPECT_TRUE(contains(r.err, ".git: git repository data, not copied")) << r;
}

TEST_F(cli_tree, ALinkInsideTheTreeIsMirroredWhereTheLinkIs) {
  // A linked file's container goes where the link is, named after the link, with the target's
  // tensors: links/arrays-link.npz -> ../sub/deep/arrays.npz was once written beside its
  // target, as sub/deep/arrays-link.wq.safetensors.
  fs::create_symlink("deep/../model.pt", in_ + "/sub/alias.pt");
  fs::create_directories(in_ + "/links");
  fs::create_symlink("../sub/deep/arrays.npz", in_ + "/links/arrays-link.npz");
  const std::string output = dir_ / "model-wq";
  const RunResult r = run(quantize_args(output, {"--jobs", "1"}));
  ASSERT_EQ(r.status, kOk) << r;
  const std::map<std::string, Bytes> files = tree_bytes(output);
  ASSERT_EQ(files.count("sub/alias.wq.safetensors"), 1u) << r;
  ASSERT_EQ(files.count("links/arrays-link.wq.safetensors"), 1u) << r;
  EXPECT_EQ(files.count("sub/deep/arrays-link.wq.safetensors"), 0u) << r;  // not beside its target
  EXPECT_TRUE(contains(r.out, "links/arrays-link.wq.safetensors")) << r;
  // The same tensors as the target's container (the containers differ only in the source
  // file name they record).
  const RunResult a = run({"inspect", output + "/links/arrays-link.wq.safetensors"});
  const RunResult b = run({"inspect", output + "/sub/deep/arrays.wq.safetensors"});
  ASSERT_EQ(a.status, kOk) << a;
  EXPECT_EQ(a.out.substr(a.out.find('\n')), b.out.substr(b.out.find('\n')));
}

TEST_F(cli_tree, DryRunPrintsThePlanAndWritesNothing) {
  const std::string output = dir_ / "model-wq";
  const RunResult r = run(quantize_args(output, {"--dry-run", "--rule", "a.*=bits:4,group:8", "--keep", "b.*"}));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_FALSE(fs::exists(output));
  EXPECT_TRUE(contains(r.out, "Dry run: nothing was written")) << r;
  EXPECT_TRUE(contains(r.out, "copy        config.json")) << r;
  EXPECT_TRUE(contains(r.out, "sub/model.pt -> sub/model.wq.safetensors")) << r;
  EXPECT_TRUE(contains(r.out, "rule a.*=bits:4,group:8")) << r;
  EXPECT_TRUE(contains(r.out, "rule b.*=keep")) << r;
  EXPECT_TRUE(contains(r.out, "minmax 4 bits, per-group 8, f32 scales")) << r;
  expect_input_unchanged();
}

TEST_F(cli_tree, OutputInsideTheInputIsRefused) {
  for (const std::string& output : {in_ + "/quantized", in_}) {
    const RunResult r = run(quantize_args(output));
    EXPECT_EQ(r.status, kUsage) << r;
    EXPECT_TRUE(contains(r.err, "inside")) << r;
  }
  EXPECT_FALSE(fs::exists(in_ + "/quantized"));
  expect_input_unchanged();
}

TEST_F(cli_tree, JsonReportFile) {
  const std::string output = dir_ / "model-wq";
  const std::string report = dir_ / "report.json";
  const RunResult r = run(quantize_args(output, {"--json=" + report, "-q"}));
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_EQ(r.out, "");
  const ojson j = ojson::parse(read_file(report));
  ASSERT_EQ(j["files"].size(), 9u) << j.dump(2);
  EXPECT_EQ(j["totals"]["files"], 9);
  std::uint64_t sum = 0;
  for (const ojson& f : j["files"]) {
    sum += f["output_bytes"].get<std::uint64_t>();
    EXPECT_EQ(f["output_bytes"].get<std::uint64_t>(), fs::file_size(output + "/" + f["output"].get<std::string>()));
  }
  EXPECT_EQ(j["totals"]["output_bytes"].get<std::uint64_t>(), sum);
  const ojson& student = j["files"][4];
  EXPECT_EQ(student["output"], "student_net.wq.safetensors");
  EXPECT_TRUE(student["sqnr_min_db"].is_number());
  EXPECT_LE(student["sqnr_min_db"].get<double>(), student["sqnr_median_db"].get<double>());
}

TEST_F(cli_tree, FileNamesThatAreNotUtf8AreQuantizedReportedAndResumed) {
  // A POSIX file name is any bytes but '/' and NUL (a Latin-1 name from an old archive, say);
  // JSON is UTF-8. Such a name used to end every command with an internal error.
  const std::string latin1 = "caf\xe9.safetensors";
  fs::rename(in_ + "/student_net.safetensors", in_ + "/" + latin1);
  const std::string output = dir_ / "model-wq";
  const std::string report = dir_ / "report.json";
  const RunResult r = run(quantize_args(output, {"--json=" + report, "-q"}));
  ASSERT_EQ(r.status, kOk) << r;
  const std::string container = output + "/caf\xe9.wq.safetensors";  // the same bytes in the output's name
  ASSERT_TRUE(fs::exists(container));
  // The container's source.file and the report show the name with U+FFFD for the byte.
  const ojson meta = parse_safetensors(read_file(container)).wq_metadata();
  EXPECT_EQ(meta["source"]["file"], "caf\xef\xbf\xbd.safetensors");
  const ojson j = ojson::parse(read_file(report));
  bool reported = false;
  for (const ojson& f : j["files"]) reported = reported || f["output"] == "caf\xef\xbf\xbd.wq.safetensors";
  EXPECT_TRUE(reported) << j.dump(2);
  // The journal keeps the exact bytes, so a rerun finds the file up to date.
  const RunResult again = run(quantize_args(output));
  ASSERT_EQ(again.status, kOk) << again;
  EXPECT_TRUE(contains(again.out, "0 written, 9 up to date")) << again;
  // One file, and inspect --json of the input and of the container.
  const RunResult one = run({"quantize", in_ + "/" + latin1, "-o", out("one.wq.safetensors"), "--backend", "cpu", "-q"});
  EXPECT_EQ(one.status, kOk) << one;
  for (const std::string& file : {in_ + "/" + latin1, container}) {
    const RunResult inspect = run({"inspect", file, "--json"});
    ASSERT_EQ(inspect.status, kOk) << inspect;
    EXPECT_TRUE(contains(ojson::parse(inspect.out)["file"].get<std::string>(), "caf\xef\xbf\xbd.")) << inspect;
  }
}

// ---------------------------------------------------------------------------------------------
// Rules (one file: the same rules apply in tree mode)

class cli_rules : public cli {
 protected:
  void SetUp() override {
    cli::SetUp();
    input_ = dir_ / "layers.safetensors";
    write_f32_safetensors(input_, {{"layers.0.mlp.w", 4, 64}, {"layers.0.attn.w", 4, 64}, {"embed.w", 8, 16}});
  }

  /// Encoding of each tensor after quantizing with `extra`: "raw", or "affine B G".
  std::map<std::string, std::string> encodings(const std::vector<std::string>& extra) {
    const std::string output = out("layers.wq.safetensors");
    quantize_ok(input_, output, extra);
    std::map<std::string, std::string> result;
    const ojson j = inspect_json(output);
    const ojson meta = parse_safetensors(read_file(output)).wq_metadata();
    for (const auto& [name, t] : meta["tensors"].items()) {
      result[name] = t["encoding"] == "affine" ? "affine " + std::to_string(t["bits"].get<int>()) + " " +
                                                    std::to_string(t["group_size"].get<std::uint64_t>())
                                               : t["encoding"].get<std::string>();
    }
    return result;
  }

  std::string input_;
};

TEST_F(cli_rules, FirstMatchWins) {
  const auto e = encodings({"--rule", "layers.*.mlp.*=bits:4,group:16", "--rule", "layers.*=bits:2", "--keep", "embed.*"});
  EXPECT_EQ(e.at("layers.0.mlp.w"), "affine 4 16");
  EXPECT_EQ(e.at("layers.0.attn.w"), "affine 2 64");  // per channel: 64 columns
  EXPECT_EQ(e.at("embed.w"), "raw");
  // The order on the command line decides, --keep included.
  const auto k = encodings({"--keep", "layers.*", "--rule", "layers.*.mlp.*=bits:4"});
  EXPECT_EQ(k.at("layers.0.mlp.w"), "raw");
  EXPECT_EQ(k.at("embed.w"), "affine 8 16");  // no rule: the defaults
}

TEST_F(cli_rules, RuleFilesJsonAndTomlComeAfterTheCommandLine) {
  write_file(dir_ / "rules.json",
             R"({"rules": [{"match": "layers.*.mlp.*", "bits": 4, "group": 16}, {"match": "embed.*", "keep": true},)"
             R"( {"match": "*", "bits": 3, "scale": "f16"}]})");
  write_file(dir_ / "rules.toml",
             "[[rules]]\nmatch = \"layers.*.mlp.*\"\nbits = 4\ngroup = 16\n\n[[rules]]\nmatch = \"embed.*\"\nkeep = true\n\n"
             "[[rules]]\nmatch = \"*\"\nbits = 3\nscale = \"f16\"\n");
  const auto from_json = encodings({"--rules", dir_ / "rules.json"});
  EXPECT_EQ(from_json.at("layers.0.mlp.w"), "affine 4 16");
  EXPECT_EQ(from_json.at("layers.0.attn.w"), "affine 3 64");
  EXPECT_EQ(from_json.at("embed.w"), "raw");
  const Bytes json_bytes = read_file(out("layers.wq.safetensors"));
  EXPECT_EQ(encodings({"--rules", dir_ / "rules.toml"}), from_json);
  EXPECT_TRUE(read_file(out("layers.wq.safetensors")) == json_bytes) << "TOML and JSON rules differ";
  // The command line comes first.
  const auto overridden = encodings({"--rules", dir_ / "rules.json", "--rule", "embed.*=bits:5"});
  EXPECT_EQ(overridden.at("embed.w"), "affine 5 16");
}

TEST_F(cli_rules, NoRulesGiveTheSameBytes) {
  // A rule that matches nothing changes nothing.
  const std::string plain = out("plain.wq.safetensors");
  quantize_ok(input_, plain, {"--bits", "4"});
  const std::string ruled = out("ruled.wq.safetensors");
  quantize_ok(input_, ruled, {"--bits", "4", "--rule", "nothing.matches=bits:2"});
  EXPECT_TRUE(read_file(plain) == read_file(ruled));
}

TEST_F(cli_rules, BadRulesAreUsageErrors) {
  write_file(dir_ / "bad.json", R"({"rules": [{"match": "x", "bitz": 4}]})");
  write_file(dir_ / "bad.toml", "[[rules]]\nmatch = \"x\"\nbits = 9\n");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--rule", "x=bits:9"}, "bits"},
      {{"--rule", "x=colour:red"}, "colour"},
      {{"--rule", "no-equals-sign"}, "no-equals-sign"},
      {{"--rule", "x="}, "no settings"},
      {{"--rules", dir_ / "bad.json"}, "bad.json: rule 1"},
      {{"--rules", dir_ / "bad.toml"}, "bad.toml: rule 1"},
  };
  const std::string output = out("layers.wq.safetensors");
  for (const auto& [flags, mention] : cases) {
    SCOPED_TRACE(testing::PrintToString(flags));
    std::vector<std::string> args{"quantize", input_, "-o", output};
    args.insert(args.end(), flags.begin(), flags.end());
    expect_clean_failure(run(args), kUsage, {mention}, output);
  }
}

TEST_F(cli_rules, DryRunOfOneFile) {
  const std::string output = out("layers.wq.safetensors");
  const RunResult r = run({"quantize", input_, "-o", output, "--dry-run", "--rule", "layers.*.mlp.*=bits:4,group:16"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_FALSE(fs::exists(output));
  EXPECT_TRUE(contains(r.out, "layers.0.mlp.w")) << r;
  EXPECT_TRUE(contains(r.out, "minmax 4 bits, per-group 16")) << r;
  EXPECT_TRUE(contains(r.out, "default")) << r;
}

}  // namespace
}  // namespace wq::e2e
