// End-to-end: GGUF through the real binary. Output with --type (and the refusals that keep a
// user from a file llama.cpp cannot load), GGUF as an input to quantize, decode, inspect and
// verify, and ggml blocks in a WQ container. ggml's own loader and llama.cpp check the bytes
// in tests/reference/gguf_ggml_check.py and llama_kl_check.py.
#include "e2e/cli_support.h"

#include <map>

#include "formats/gguf_file.h"
#include "io/mapped_file.h"

namespace wq::e2e {
namespace {

// A safetensors file with a weight of rows of 256, a 1-d vector, and whatever `extra` adds.
std::string weights_file(const std::string& path, const std::string& extra_header = "", const Bytes& extra = "") {
  std::vector<float> w(8 * 256), b(256);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * 0.05f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 1.0f + 0.001f * static_cast<float>(i);
  const Bytes data = f32_bytes(w) + f32_bytes(b) + extra;
  std::string header = R"({"blk.0.attn_q.weight":{"dtype":"F32","shape":[8,256],"data_offsets":[0,8192]},)"
                       R"("blk.0.attn_norm.weight":{"dtype":"F32","shape":[256],"data_offsets":[8192,9216]})";
  header += extra_header + "}";
  write_safetensors(path, header, data);
  return path;
}

// GGUF pieces, little-endian, for a source file written by hand (GgufWriter always aligns to 32).
std::string le32(std::uint32_t v) { return u64_le(v).substr(0, 4); }
std::string gguf_str(const std::string& s) { return u64_le(s.size()) + s; }

// A GGUF file with every kind of metadata value (a string that is not UTF-8, a UINT64 above
// 2^53, arrays), general.alignment 64, and the weights of weights_file() as F32 tensors.
std::string rich_gguf(const std::string& path) {
  enum : std::uint32_t { kU32 = 4, kF32 = 6, kBool = 7, kString = 8, kArray = 9, kU64 = 10, kF64 = 12 };
  const float scores[3] = {0.0f, -1.5f, 2.25f};
  const double pi = 3.141592653589793;
  const std::string kvs =
      gguf_str("general.architecture") + le32(kString) + gguf_str("llama") +  //
      gguf_str("general.alignment") + le32(kU32) + le32(64) +                  //
      gguf_str("general.name") + le32(kString) + gguf_str("wq test") +         //
      gguf_str("llama.block_count") + le32(kU32) + le32(1) +                   //
      gguf_str("tokenizer.ggml.tokens") + le32(kArray) + le32(kString) + u64_le(3) + gguf_str("<unk>") +
      gguf_str("a") + gguf_str("\xff\xfe raw") +
      gguf_str("tokenizer.ggml.scores") + le32(kArray) + le32(kF32) + u64_le(3) +
      std::string(reinterpret_cast<const char*>(scores), sizeof scores) +
      gguf_str("test.flag") + le32(kBool) + std::string(1, '\1') +  //
      gguf_str("test.big") + le32(kU64) + u64_le(0xfffffffffffffff1ull) +
      gguf_str("test.pi") + le32(kF64) + std::string(reinterpret_cast<const char*>(&pi), 8) +
      gguf_str("test.text") + le32(kString) + gguf_str("line one\n\"two\" \xff" + std::string(130, 'x'));
  const std::string infos = gguf_str("blk.0.attn_q.weight") + le32(2) + u64_le(256) + u64_le(8) + le32(0) + u64_le(0) +
                            gguf_str("blk.0.attn_norm.weight") + le32(1) + u64_le(256) + le32(0) + u64_le(8192);
  std::string file = "GGUF" + le32(3) + u64_le(2) + u64_le(10) + kvs + infos;
  file.resize((file.size() + 63) / 64 * 64, '\0');
  const std::string weights = weights_file(path + ".safetensors");
  const Safetensors st = parse_safetensors(read_file(weights));
  file += st.tensor_data("blk.0.attn_q.weight") + st.tensor_data("blk.0.attn_norm.weight");
  write_file(path, file);
  return path;
}

TEST_F(cli, GgufOutputNeedsATypeAndLeavesNothingWithoutOne) {
  const std::string input = weights_file(dir_.path() + "/w.safetensors");
  const std::string output = out("w.gguf");
  RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {output, "--type"}, output);
  r = run({"quantize", input, "-o", output, "--method", "mse", "--bits", "4", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--type"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q7_K", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"Q7_K", "Q4_K"}, output);
  // A rule may still choose wq's own encoding: GGUF cannot hold it.
  r = run({"quantize", input, "-o", output, "--type", "Q8_0", "--rule", "*attn_q*=method:minmax", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {input, "'blk.0.attn_q.weight'", "ggml types"}, output);
  // --type F32 is a GGUF type only.
  r = run({"quantize", input, "-o", out("w.wq.safetensors"), "--type", "F32", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"F32"}, out("w.wq.safetensors"));
}

TEST_F(cli, GgufOutputWithTypesRulesAndFallbacks) {
  // A weight of rows of 96: whole blocks of 32 but not of 256.
  std::vector<float> odd(4 * 96);
  for (std::size_t i = 0; i < odd.size(); ++i) odd[i] = 0.01f * static_cast<float>(i % 17);
  const std::string input = weights_file(dir_.path() + "/w.safetensors",
                                         R"(,"blk.0.ffn_down.weight":{"dtype":"F32","shape":[4,96],"data_offsets":[9216,10752]})",
                                         f32_bytes(odd));
  const std::string output = out("w.gguf");
  const RunResult r = run({"quantize", input, "-o", output, "--type", "q4_k", "--rule", "*attn_q*=type:Q6_K",
                           "--json", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  const ojson report = ojson::parse(r.out);
  EXPECT_EQ(report["spec"]["type"], "Q4_K");
  const ojson& tensors = report["tensors"];
  EXPECT_EQ(tensors[0]["type"], "Q6_K");  // the rule
  EXPECT_EQ(tensors[1]["encoding"], "raw");  // 1-d stays float32
  EXPECT_EQ(tensors[2]["type"], "Q5_0");  // rows of 96: llama-quantize's fallback
  EXPECT_TRUE(contains(tensors[2]["note"].get<std::string>(), "rows of 96 are not whole Q4_K blocks of 256"));
  const Bytes file = read_file(output);
  EXPECT_EQ(file.substr(0, 4), "GGUF");
  // inspect and verify read it back; decode gives the decoded floats under the same names.
  const RunResult inspect = run({"inspect", output, "--json"});
  ASSERT_EQ(inspect.status, kOk) << inspect;
  const ojson listed = ojson::parse(inspect.out);
  EXPECT_EQ(listed["format"], "gguf");
  EXPECT_EQ(listed["tensors"][0]["type"], "Q6_K");
  EXPECT_EQ(listed["tensors"][0]["shape"], ojson::parse("[8,256]"));
  EXPECT_EQ(listed["tensors"][2]["type"], "Q5_0");
  const RunResult verify = run({"verify", output});
  EXPECT_EQ(verify.status, kOk) << verify;
  EXPECT_TRUE(contains(verify.out, "GGUF")) << verify;
  const std::string decoded = out("w.decoded.safetensors");
  ASSERT_EQ(run({"decode", output, "-o", decoded, "--backend", "cpu"}).status, kOk);
  const Safetensors st = parse_safetensors(read_file(decoded));
  EXPECT_EQ(st.header["blk.0.attn_q.weight"]["shape"], ojson::parse("[8,256]"));
  EXPECT_EQ(st.header["blk.0.attn_norm.weight"]["dtype"], "F32");
}

TEST_F(cli, GgufInputAsACheckpointAndRequantizingNeedsAFlag) {
  const std::string input = weights_file(dir_.path() + "/w.safetensors");
  const std::string q8 = out("w-q8_0.gguf");
  ASSERT_EQ(run({"quantize", input, "-o", q8, "--type", "Q8_0", "-q", "--backend", "cpu"}).status, kOk);
  const Bytes before = read_file(q8);
  // Its Q8_0 tensor is already quantized: a second rounding needs --allow-requantize.
  const std::string q4 = out("w-q4_0.gguf");
  RunResult r = run({"quantize", q8, "-o", q4, "--type", "Q4_0", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {q8, "'blk.0.attn_q.weight'", "Q8_0", "--allow-requantize"}, q4, q8, &before);
  r = run({"quantize", q8, "-o", q4, "--type", "Q4_0", "--allow-requantize", "-q", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  // The same type again is no second rounding: the blocks are copied, GGUF to GGUF and into a
  // container, and both decode to the values of the original.
  const std::string again = out("again.gguf"), kept = out("kept.wq.safetensors");
  r = run({"quantize", q8, "-o", again, "--type", "Q8_0", "--json", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(ojson::parse(r.out)["tensors"][0]["note"].get<std::string>(), "copied unchanged")) << r;
  const Bytes original = read_file(q8), copy = read_file(again);
  // The data section ends with the Q8_0 blocks (2176 bytes) and the F32 vector (1024), both aligned.
  EXPECT_TRUE(original.substr(original.size() - 2176 - 1024) == copy.substr(copy.size() - 2176 - 1024));
  ASSERT_EQ(run({"quantize", q8, "-o", kept, "--type", "Q8_0", "-q", "--backend", "cpu"}).status, kOk);
  const std::string from_gguf = out("from_gguf.safetensors"), from_kept = out("from_kept.safetensors");
  ASSERT_EQ(run({"decode", q8, "-o", from_gguf, "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"decode", kept, "-o", from_kept, "--backend", "cpu"}).status, kOk);
  EXPECT_TRUE(parse_safetensors(read_file(from_gguf)).tensor_data("blk.0.attn_q.weight") ==
              parse_safetensors(read_file(from_kept)).tensor_data("blk.0.attn_q.weight"));
  // Into a WQ container the same way (the 1-d F32 vector is plain: no flag needed for it).
  const std::string container = out("w.wq.safetensors");
  r = run({"quantize", q8, "-o", container, "--bits", "4", "--keep", "*attn_q*", "-q", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
}

// Tree mode with --to gguf: every checkpoint becomes NAME.gguf in the mirrored folder (GGUF
// inputs too), other files are copied, a second run finds everything up to date, and a sharded
// checkpoint is refused before anything is written.
TEST_F(cli, TreeModeWritesGgufFilesAndResumes) {
  const std::string tree = dir_.path() + "/tree";
  fs::create_directories(tree + "/sub");
  weights_file(tree + "/a.safetensors");
  weights_file(tree + "/sub/b.safetensors");
  write_file(tree + "/config.json", "{}");
  ASSERT_EQ(run({"quantize", weights_file(dir_.path() + "/c.safetensors"), "-o", tree + "/sub/c.gguf", "--type", "F32",
                 "-q", "--backend", "cpu"}).status, kOk);
  const std::string output = out("tree-gguf");
  RunResult r = run({"quantize", tree, "-o", output, "--to", "gguf", "--type", "Q8_0", "-q", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  for (const char* name : {"/a.gguf", "/sub/b.gguf", "/sub/c.gguf"}) {
    EXPECT_EQ(read_file(output + name).substr(0, 4), "GGUF") << name;
  }
  EXPECT_EQ(read_file(output + "/config.json"), "{}");
  r = run({"quantize", tree, "-o", output, "--to", "gguf", "--type", "Q8_0", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(r.out, "0 written, 4 up to date")) << r;
  EXPECT_EQ(run({"verify", output}).status, kOk);
  // A sharded checkpoint in the tree: one model.gguf of its shards (the file its index gives
  // alone), not a GGUF per shard; up to date on a rerun and after a shard is touched without a
  // change (the journal's XXH3 of each shard decides), redone when a shard's bytes change.
  const std::string sharded = dir_.path() + "/sharded";
  fs::create_directories(sharded);
  const std::string shard = weights_file(sharded + "/model-00001-of-00001.safetensors");
  write_file(sharded + "/model.safetensors.index.json",
             R"({"metadata":{},"weight_map":{"blk.0.attn_q.weight":"model-00001-of-00001.safetensors",)"
             R"("blk.0.attn_norm.weight":"model-00001-of-00001.safetensors"}})");
  write_file(sharded + "/config.json", "{}");
  const std::string folder = out("sharded-gguf");
  r = run({"quantize", sharded, "-o", folder, "--to", "gguf", "--type", "Q8_0", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(r.out, "2 written")) << r;  // model.gguf and config.json
  EXPECT_FALSE(fs::exists(folder + "/model-00001-of-00001.gguf"));
  ASSERT_EQ(run({"quantize", sharded + "/model.safetensors.index.json", "-o", out("alone.gguf"), "--type", "Q8_0",
                 "-q", "--backend", "cpu"}).status, kOk);
  EXPECT_TRUE(read_file(folder + "/model.gguf") == read_file(out("alone.gguf")));
  r = run({"quantize", sharded, "-o", folder, "--to", "gguf", "--type", "Q8_0", "--backend", "cpu"});
  EXPECT_TRUE(contains(r.out, "0 written, 2 up to date")) << r;
  const Bytes same = read_file(shard);
  fs::remove(shard);
  write_file(shard, same);  // the same bytes, a new file: its mtime changed
  fs::last_write_time(shard, fs::last_write_time(shard) + std::chrono::seconds(5));
  r = run({"quantize", sharded, "-o", folder, "--to", "gguf", "--type", "Q8_0", "--dry-run"});
  EXPECT_TRUE(contains(r.out, "up to date")) << r;
  EXPECT_FALSE(contains(r.out, "quantize    ")) << r;
  r = run({"quantize", sharded, "-o", folder, "--to", "gguf", "--type", "Q8_0", "--backend", "cpu"});
  EXPECT_TRUE(contains(r.out, "0 written, 2 up to date")) << r;
  // Other bytes, the same size (the last weight of attn_norm), touched: redone.
  const Bytes before = read_file(folder + "/model.gguf");
  Bytes changed = same;
  changed[changed.size() - 2] = static_cast<char>(changed[changed.size() - 2] ^ 0x40);
  write_file(shard, changed);
  fs::last_write_time(shard, fs::last_write_time(shard) + std::chrono::seconds(10));
  r = run({"quantize", sharded, "-o", folder, "--to", "gguf", "--type", "Q8_0", "--backend", "cpu"});
  EXPECT_TRUE(contains(r.out, "1 written, 1 up to date")) << r;
  EXPECT_FALSE(read_file(folder + "/model.gguf") == before);
}

// A sharded checkpoint's index becomes one GGUF file holding every shard's tensors, in the
// index's shard order: the blocks each shard gives on its own.
TEST_F(cli, ShardedCheckpointBecomesOneGgufFile) {
  const std::string folder = dir_.path() + "/sharded";
  fs::create_directories(folder);
  const std::string first = weights_file(folder + "/model-00001-of-00002.safetensors");
  std::vector<float> w(4 * 256);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.11f * static_cast<float>(i)) * 0.2f;
  const std::string second = folder + "/model-00002-of-00002.safetensors";
  write_safetensors(second, R"({"blk.1.attn_q.weight":{"dtype":"F32","shape":[4,256],"data_offsets":[0,4096]}})",
                    f32_bytes(w));
  const std::string index = folder + "/model.safetensors.index.json";
  write_file(index, R"({"metadata":{},"weight_map":{"blk.0.attn_q.weight":"model-00001-of-00002.safetensors",)"
                    R"("blk.1.attn_q.weight":"model-00002-of-00002.safetensors",)"
                    R"("blk.0.attn_norm.weight":"model-00001-of-00002.safetensors"}})");
  const std::string merged = out("model.gguf");
  ASSERT_EQ(run({"quantize", index, "-o", merged, "--type", "Q4_K", "-q", "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"quantize", first, "-o", out("1.gguf"), "--type", "Q4_K", "-q", "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"quantize", second, "-o", out("2.gguf"), "--type", "Q4_K", "-q", "--backend", "cpu"}).status, kOk);
  const RunResult listed = run({"inspect", merged, "--json"});
  ASSERT_EQ(listed.status, kOk) << listed;
  const ojson tensors = ojson::parse(listed.out)["tensors"];
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0]["name"], "blk.0.attn_q.weight");
  EXPECT_EQ(tensors[1]["name"], "blk.0.attn_norm.weight");
  EXPECT_EQ(tensors[2]["name"], "blk.1.attn_q.weight");
  EXPECT_EQ(tensors[2]["type"], "Q4_K");
  const auto decoded = [&](const std::string& gguf, const std::string& name) {
    const std::string path = out(name);
    EXPECT_EQ(run({"decode", gguf, "-o", path, "--backend", "cpu"}).status, kOk);
    return parse_safetensors(read_file(path));
  };
  const Safetensors all = decoded(merged, "all.safetensors"), one = decoded(out("1.gguf"), "one.safetensors"),
                    two = decoded(out("2.gguf"), "two.safetensors");
  EXPECT_TRUE(all.tensor_data("blk.0.attn_q.weight") == one.tensor_data("blk.0.attn_q.weight"));
  EXPECT_TRUE(all.tensor_data("blk.0.attn_norm.weight") == one.tensor_data("blk.0.attn_norm.weight"));
  EXPECT_TRUE(all.tensor_data("blk.1.attn_q.weight") == two.tensor_data("blk.1.attn_q.weight"));
  // A missing shard is an error naming it, and nothing is written.
  fs::remove(second);
  const RunResult r = run({"quantize", index, "-o", out("broken.gguf"), "--type", "Q4_K", "--backend", "cpu"});
  expect_clean_failure(r, kInputMissing, {"model-00002-of-00002.safetensors"}, out("broken.gguf"));
}

TEST_F(cli, GgufRefusesNamesAndTypesItCannotHold) {
  const std::string long_name(70, 'n');
  const std::string input = weights_file(
      dir_.path() + "/w.safetensors",
      ",\"" + long_name + "\":{\"dtype\":\"F32\",\"shape\":[1,32],\"data_offsets\":[9216,9344]}", f32_bytes(std::vector<float>(32, 0.5f)));
  const std::string output = out("w.gguf");
  RunResult r = run({"quantize", input, "-o", output, "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {input, long_name, "63", "--gguf-long-names"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q8_0", "--gguf-long-names", "-q", "--backend", "cpu"});
  EXPECT_EQ(r.status, kOk) << r;
  // A U8 tensor has no GGUF type.
  const std::string bytes_input = weights_file(dir_.path() + "/u8.safetensors",
                                               R"(,"mask":{"dtype":"U8","shape":[4],"data_offsets":[9216,9220]})", "\x01\x02\x03\x04");
  const std::string u8_out = out("u8.gguf");
  r = run({"quantize", bytes_input, "-o", u8_out, "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(r, kUnsupported, {bytes_input, "'mask'", "U8"}, u8_out);
  // The dry run says the same before anything is read.
  r = run({"quantize", input, "-o", out("w2.gguf"), "--type", "Q8_0", "--dry-run"});
  EXPECT_EQ(r.status, kUsage) << r;
}

// llama-quantize's Q4_K_M mix on 8 layers: attn_v and ffn_down get Q6_K in layers 0, 3, 6 and 7
// (use_more_bits: the first and last eighth, and every third between), the output matrix Q6_K,
// the rest Q4_K; 1-d tensors stay F32; a rule still wins; general.file_type is Q4_K_M's 15.
TEST_F(cli, LlamaQuantizePresetsGiveTheirMix) {
  std::string header = "{";
  Bytes data;
  const auto add = [&](const std::string& name, std::uint64_t rows, std::uint64_t cols) {
    std::vector<float> v(rows == 0 ? cols : rows * cols);  // rows 0: a 1-d tensor
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.1f * static_cast<float>(i + name.size()));
    if (header.size() > 1) header += ",";
    const std::string shape = rows == 0 ? "[" + std::to_string(cols) + "]" : "[" + std::to_string(rows) + "," + std::to_string(cols) + "]";
    header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + 4 * v.size()) + "]}";
    data += f32_bytes(v);
  };
  add("token_embd.weight", 4, 256);
  for (int layer = 0; layer < 8; ++layer) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    add(p + "attn_norm.weight", 0, 256);
    add(p + "attn_q.weight", 2, 256);
    add(p + "attn_v.weight", 2, 256);
    add(p + "ffn_down.weight", 2, 256);
  }
  add("output.weight", 4, 256);
  header += "}";
  const std::string input = dir_.path() + "/llama.safetensors";
  write_safetensors(input, header, data);
  const std::string output = out("q4_k_m.gguf");
  const RunResult r = run({"quantize", input, "-o", output, "--type", "Q4_K_M", "--rule", "blk.1.attn_q*=type:Q8_0",
                           "--json", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  std::map<std::string, std::string> type_of;
  const ojson report = ojson::parse(r.out);
  for (const ojson& t : report["tensors"]) {
    type_of[t["name"].get<std::string>()] = t.contains("type") ? t["type"].get<std::string>() : t["encoding"].get<std::string>();
  }
  for (int layer = 0; layer < 8; ++layer) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    const bool more = layer == 0 || layer == 3 || layer == 6 || layer == 7;
    EXPECT_EQ(type_of[p + "attn_v.weight"], more ? "Q6_K" : "Q4_K") << layer;
    EXPECT_EQ(type_of[p + "ffn_down.weight"], more ? "Q6_K" : "Q4_K") << layer;
    EXPECT_EQ(type_of[p + "attn_q.weight"], layer == 1 ? "Q8_0" : "Q4_K") << layer;
    EXPECT_EQ(type_of[p + "attn_norm.weight"], "raw") << layer;
  }
  EXPECT_EQ(type_of["output.weight"], "Q6_K");
  EXPECT_EQ(type_of["token_embd.weight"], "Q4_K");
  // general.file_type 15 (LLAMA_FTYPE_MOSTLY_Q4_K_M), as a UINT32 pair in the header.
  const Bytes file = read_file(output);
  const std::size_t key = file.find("general.file_type");
  ASSERT_NE(key, std::string::npos);
  EXPECT_EQ(file.substr(key + 17, 8), std::string("\x04\0\0\0\x0f\0\0\0", 8));
  // Unknown names are refused with the list.
  const RunResult bad = run({"quantize", input, "-o", out("x.gguf"), "--preset", "Q4_K_X", "--backend", "cpu"});
  expect_clean_failure(bad, kUsage, {"Q4_K_X", "Q4_K_M"}, out("x.gguf"));
}

TEST_F(cli, GgmlBlocksInAContainerDecodeLikeTheGgufFile) {
  const std::string input = weights_file(dir_.path() + "/w.safetensors");
  const std::string container = out("w.wq.safetensors");
  const std::string gguf = out("w.gguf");
  ASSERT_EQ(run({"quantize", input, "-o", container, "--type", "Q3_K", "-q", "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"quantize", input, "-o", gguf, "--type", "Q3_K", "-q", "--backend", "cpu"}).status, kOk);
  const Safetensors st = parse_safetensors(read_file(container));
  const ojson meta = ojson::parse(st.header["__metadata__"]["wq"].get<std::string>());
  EXPECT_EQ(meta["version"], 2);
  EXPECT_EQ(meta["tensors"]["blk.0.attn_q.weight"]["encoding"], "ggml");
  EXPECT_EQ(meta["tensors"]["blk.0.attn_q.weight"]["ggml_type"], "Q3_K");
  EXPECT_EQ(st.header["blk.0.attn_q.weight.__blocks"]["shape"], ojson::parse("[880]"));  // 8 blocks of 110
  EXPECT_EQ(run({"verify", container}).status, kOk);
  const std::string from_container = out("a.safetensors"), from_gguf = out("b.safetensors");
  ASSERT_EQ(run({"decode", container, "-o", from_container, "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"decode", gguf, "-o", from_gguf, "--backend", "cpu"}).status, kOk);
  const Safetensors a = parse_safetensors(read_file(from_container)), b = parse_safetensors(read_file(from_gguf));
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_norm.weight"}) {
    EXPECT_TRUE(a.tensor_data(name) == b.tensor_data(name)) << name;  // the same blocks, decoded the same way
  }
  // A damaged ggml_type in the metadata is refused naming the tensor.
  Bytes bad = read_file(container);
  const std::size_t at = bad.find("\\\"Q3_K\\\"");
  ASSERT_NE(at, std::string::npos);
  bad.replace(at, 8, "\\\"Q9_K\\\"");
  write_file(container, bad);
  const RunResult r = run({"decode", container, "-o", out("c.safetensors"), "--backend", "cpu"});
  expect_clean_failure(r, kBadFormat, {container, "'blk.0.attn_q.weight'", "ggml_type"}, out("c.safetensors"));
}

// --method mse with a legacy type: wq's search in that layout (never a larger error than the
// reference blocks), recorded in the report and the container; refused where it has no form.
TEST_F(cli, GgmlMseSearchIsRecordedAndRefusedWhereItHasNoForm) {
  const std::string input = weights_file(dir_.path() + "/w.safetensors");
  const std::string reference = out("ref.gguf"), searched = out("mse.gguf");
  RunResult r = run({"quantize", input, "-o", reference, "--type", "Q4_0", "--json", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  const ojson ref_report = ojson::parse(r.out);
  r = run({"quantize", input, "-o", searched, "--type", "Q4_0", "--method", "mse", "--json", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  const ojson report = ojson::parse(r.out);
  EXPECT_EQ(report["spec"]["type"], "Q4_0");
  EXPECT_EQ(report["spec"]["search"], "mse");
  EXPECT_EQ(report["tensors"][0]["type"], "Q4_0");
  EXPECT_EQ(report["tensors"][0]["search"], "mse");
  EXPECT_GT(report["tensors"][0]["sqnr_db"].get<double>(), ref_report["tensors"][0]["sqnr_db"].get<double>());
  EXPECT_EQ(read_file(searched).size(), read_file(reference).size());  // the same layout
  EXPECT_EQ(run({"verify", searched}).status, kOk);
  // A rule may ask for it per tensor; a container records it.
  const std::string container = out("w.wq.safetensors");
  ASSERT_EQ(run({"quantize", input, "-o", container, "--type", "Q8_0", "--rule", "*attn_q*=type:Q4_1,method:mse", "-q",
                 "--backend", "cpu"}).status, kOk);
  const Safetensors st = parse_safetensors(read_file(container));
  const ojson meta = ojson::parse(st.header["__metadata__"]["wq"].get<std::string>());
  EXPECT_EQ(meta["tensors"]["blk.0.attn_q.weight"]["ggml_type"], "Q4_1");
  EXPECT_EQ(meta["tensors"]["blk.0.attn_q.weight"]["range"], "mse");
  const RunResult inspect = run({"inspect", container});
  EXPECT_TRUE(contains(inspect.out, "Q4_1 mse")) << inspect;
  // Refusals, before anything is written.
  const std::string output = out("no.gguf");
  r = run({"quantize", input, "-o", output, "--type", "Q4_K", "--method", "mse", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"mse", "Q4_K", "Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q4_K_M", "--method", "mse", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--type Q4_K_M with --method mse: ", "k-quants"}, output);
  r = run({"quantize", input, "-o", output, "--preset", "Q8_0", "--method", "mse", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--preset Q8_0 with --method mse: ", "llama-quantize mix"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q4_0", "--method", "symmetric", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--type Q4_0 with --method symmetric: ", "fixes its own arithmetic"}, output);
  r = run({"quantize", input, "-o", output, "--type", "F16", "--method", "mse", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--type F16 with --method mse: ", "float type"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q9_K", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"--type Q9_K: neither a ggml type", "Q4_K_M"}, output);
  r = run({"quantize", input, "-o", output, "--type", "Q8_0", "--rule", "*attn_q*=type:Q6_K,method:mse", "--backend",
           "cpu"});
  expect_clean_failure(r, kUsage, {"*attn_q*", "Q6_K"}, output);
}

// A WQ container as the input: its ggml blocks go into GGUF unchanged (the file a GGUF output of
// the source gives), wq's own codes only with --allow-requantize, and a damaged block is found
// by the checksum before anything is written.
TEST_F(cli, ContainerToGgufCopiesItsBlocks) {
  const std::string input = weights_file(dir_.path() + "/w.safetensors");
  const std::string container = out("w.wq.safetensors");
  ASSERT_EQ(run({"quantize", input, "-o", container, "--type", "Q5_K", "-q", "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"quantize", input, "-o", out("direct.gguf"), "--type", "Q5_K", "-q", "--backend", "cpu"}).status, kOk);
  const RunResult converted = run({"quantize", container, "-o", out("converted.gguf"), "--type", "Q5_K", "--backend", "cpu"});
  ASSERT_EQ(converted.status, kOk) << converted;
  EXPECT_TRUE(contains(converted.out, "stored Q5_K blocks copied unchanged")) << converted;
  EXPECT_TRUE(read_file(out("converted.gguf")) == read_file(out("direct.gguf")));
  // Another type would round the decoded values again.
  RunResult r = run({"quantize", container, "-o", out("q8.gguf"), "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {container, "'blk.0.attn_q.weight'", "Q5_K", "--allow-requantize"}, out("q8.gguf"));
  // wq's own 4-bit codes: decoded, then quantized with the flag.
  const std::string affine = out("a.wq.safetensors");
  ASSERT_EQ(run({"quantize", input, "-o", affine, "--bits", "4", "-q", "--backend", "cpu"}).status, kOk);
  r = run({"quantize", affine, "-o", out("a.gguf"), "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(r, kUsage, {"4-bit minmax codes", "--allow-requantize"}, out("a.gguf"));
  r = run({"quantize", affine, "-o", out("a.gguf"), "--type", "Q8_0", "--allow-requantize", "-q", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_EQ(read_file(out("a.gguf")).substr(0, 4), "GGUF");
  // One flipped byte in the blocks: an integrity error naming the tensor, no output.
  const Safetensors st = parse_safetensors(read_file(container));
  const std::uint64_t at = st.data_start +
                           st.header["blk.0.attn_q.weight.__blocks"]["data_offsets"][0].get<std::uint64_t>() + 5;
  Bytes bad = st.bytes;
  bad[at] = static_cast<char>(bad[at] ^ 0x5a);
  write_file(container, bad);
  r = run({"quantize", container, "-o", out("bad.gguf"), "--type", "Q5_K", "--backend", "cpu"});
  expect_clean_failure(r, kIntegrity, {container, "blk.0.attn_q.weight"}, out("bad.gguf"));
}

// GGUF -> WQ container -> GGUF gives the file GGUF -> GGUF gives, every metadata pair included
// (the container carries them: docs/container-format.md §2), and the output is laid out at its
// own alignment, which general.alignment then says. A damaged copy in the container is refused
// before anything is written.
TEST_F(cli, GgufMetadataSurvivesAContainer) {
  const std::string source = rich_gguf(out("rich.gguf"));
  ASSERT_EQ(run({"verify", source}).status, kOk);
  const std::string container = out("rich.wq.safetensors"), direct = out("direct.gguf"), back = out("back.gguf");
  ASSERT_EQ(run({"quantize", source, "-o", container, "--type", "Q8_0", "-q", "--backend", "cpu"}).status, kOk);
  ASSERT_EQ(run({"quantize", source, "-o", direct, "--type", "Q8_0", "-q", "--backend", "cpu"}).status, kOk);
  const RunResult r = run({"quantize", container, "-o", back, "--type", "Q8_0", "--backend", "cpu"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(read_file(back) == read_file(direct)) << "the container lost something of the GGUF";
  const detail::GgufFile original{detail::MappedFile(source)}, written{detail::MappedFile(back)};
  EXPECT_EQ(written.alignment(), 32u);
  EXPECT_EQ(written.u32_value("general.alignment"), 32u);
  for (const detail::GgufKv& kv : original.kvs()) {
    if (kv.key == "general.alignment") continue;
    const detail::GgufKv* copy = written.find_kv(kv.key);
    ASSERT_NE(copy, nullptr) << kv.key;
    EXPECT_EQ(copy->type, kv.type) << kv.key;
    EXPECT_TRUE(std::equal(kv.value.begin(), kv.value.end(), copy->value.begin(), copy->value.end())) << kv.key;
  }
  EXPECT_EQ(written.u32_value("general.file_type"), 7u);  // LLAMA_FTYPE_MOSTLY_Q8_0
  EXPECT_EQ(run({"verify", back}).status, kOk);

  // inspect lists the pairs, of the GGUF and of the container made from it alike.
  const ojson listed = inspect_json(source)["metadata"];
  ASSERT_EQ(listed.size(), 10u) << listed.dump();
  const auto pair = [&](std::size_t i) {
    return listed[i]["key"].get<std::string>() + " " + listed[i]["type"].get<std::string>() + " " +
           listed[i]["value"].get<std::string>();
  };
  EXPECT_EQ(pair(1), "general.alignment UINT32 64");
  EXPECT_EQ(pair(4), "tokenizer.ggml.tokens ARRAY[STRING] 3 values");
  EXPECT_EQ(pair(6), "test.flag BOOL true");
  EXPECT_EQ(pair(7), "test.big UINT64 18446744073709551601");
  EXPECT_EQ(pair(8), "test.pi FLOAT64 3.141592653589793");
  // Strings on one line: control characters and bytes that are not UTF-8 as \xNN, cut at 120.
  EXPECT_EQ(pair(9), "test.text STRING \"line one\\x0a\\\"two\\\" \\xff" + std::string(120 - 16, 'x') + "\"...");
  EXPECT_EQ(inspect_json(container)["metadata"], listed);
  const RunResult table = run({"inspect", container});
  ASSERT_EQ(table.status, kOk) << table;
  EXPECT_TRUE(contains(table.out, "10 metadata pairs (of the GGUF it was made from)")) << table;
  EXPECT_TRUE(contains(table.out, "test.big")) << table;

  // The pairs as the container stores them: base64 text in the wq metadata.
  const Safetensors st = parse_safetensors(read_file(container));
  ojson wq = st.wq_metadata();
  ASSERT_TRUE(wq.contains("gguf_kv")) << wq.dump();
  const auto with_gguf_kv = [&](const std::string& text) {
    ojson changed = wq;
    changed["gguf_kv"] = text;
    ojson header = st.header;
    header["__metadata__"]["wq"] = changed.dump();
    const std::string damaged = out("damaged.wq.safetensors");
    write_file(damaged, safetensors_bytes(header.dump(), st.bytes.substr(st.data_start)));
    return damaged;
  };
  const std::string text = wq["gguf_kv"].get<std::string>();
  std::string not_base64 = text;
  not_base64[5] = '!';
  std::string damaged = with_gguf_kv(not_base64);
  RunResult bad = run({"quantize", damaged, "-o", out("no.gguf"), "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(bad, kBadFormat, {damaged, "gguf_kv", "base64"}, out("no.gguf"));
  // Valid base64 of records cut short (the last pair loses its value's last bytes).
  damaged = with_gguf_kv(text.substr(0, text.size() - 8));
  bad = run({"quantize", damaged, "-o", out("no.gguf"), "--type", "Q8_0", "--backend", "cpu"});
  expect_clean_failure(bad, kBadFormat, {damaged, "gguf_kv", "'test.text'", "truncated"}, out("no.gguf"));
  EXPECT_EQ(run({"verify", damaged}).status, kBadFormat);
}

}  // namespace
}  // namespace wq::e2e
