// The checkpoint writers, judged by the real frameworks: files written here are loaded with
// torch.load(weights_only=True), pickle.load (as paddle.load does) and numpy.load in Python and
// compared value for value, dtype for dtype, name for name; then read back by wq's own readers.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include <nlohmann/json.hpp>

#include "formats/checkpoint_writer.h"
#include "formats/file_support.h"
#include "formats/numpy_reader.h"
#include "formats/pickle_emitter.h"
#include "formats/python_fixture.h"
#include "formats/safetensors_file.h"
#include "formats/zip_writer.h"
#include "test_support.h"
#include "io/atomic_file.h"
#include "wq/error.h"

namespace wq {
namespace {

using test::read_bytes;
using test::TempDir;

struct Tensor {
  TensorInfo info;
  std::string bytes;  // dense little-endian data
};

template <typename T>
std::string le_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

// One tensor of every dtype, the brief's small set first: F32 2-D, F16, BF16, I64 0-d, BOOL, U8.
std::vector<Tensor> every_dtype() {
  return {
      {{"encoder.weight", DType::kF32, {2, 3}}, le_bytes<float>({-1.5f, 0.25f, 3.0f, 1e-3f, -7.0f, 42.0f})},
      {{"encoder.half", DType::kF16, {4}}, le_bytes<std::uint16_t>({0x3C00, 0xC000, 0x3555, 0x7BFF})},
      {{"encoder.bf16", DType::kBF16, {2, 2}}, le_bytes<std::uint16_t>({0x3F80, 0xC040, 0x4049, 0x8000})},
      {{"bn.num_batches_tracked", DType::kI64, {}}, le_bytes<std::int64_t>({123456789012})},
      {{"mask", DType::kBool, {5}}, le_bytes<std::uint8_t>({1, 0, 0, 1, 1})},
      {{"bytes", DType::kU8, {3}}, le_bytes<std::uint8_t>({0, 200, 255})},
      {{"empty", DType::kF32, {0, 3}}, ""},
      {{"f64", DType::kF64, {3}}, le_bytes<double>({1.0 / 3, -2e300, 0.0})},
      {{"i32", DType::kI32, {2, 2}}, le_bytes<std::int32_t>({-2147483647 - 1, 7, -1, 2147483647})},
      {{"i16", DType::kI16, {2}}, le_bytes<std::int16_t>({-32768, 1234})},
      {{"i8", DType::kI8, {1, 1, 3}}, le_bytes<std::int8_t>({-128, 0, 127})},
      {{"big.weight", DType::kF32, {64, 33}}, [] {
         std::vector<float> v(64 * 33);
         for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f - 100.0f;
         return le_bytes(v);
       }()},
  };
}

// More tensors than one SETITEMS batch (1000) and more memo-free entries than 256.
std::vector<Tensor> many_scalars() {
  std::vector<Tensor> out;
  for (std::int32_t i = 0; i < 1100; ++i) {
    out.push_back({{"p." + std::to_string(i), DType::kI32, {}}, le_bytes<std::int32_t>({i * 3 - 7})});
  }
  return out;
}

std::vector<Tensor> without_bf16(std::vector<Tensor> tensors) {
  std::erase_if(tensors, [](const Tensor& t) { return t.info.dtype == DType::kBF16; });
  return tensors;
}

std::vector<TensorInfo> infos(const std::vector<Tensor>& tensors) {
  std::vector<TensorInfo> out;
  for (const Tensor& t : tensors) out.push_back(t.info);
  return out;
}

void write_file(const std::string& format, const std::string& path, const std::vector<Tensor>& tensors,
                const detail::WriterExtras& extras = {}) {
  const std::unique_ptr<detail::CheckpointWriter> w = detail::make_checkpoint_writer(format, path, infos(tensors), extras);
  for (const Tensor& t : tensors) w->add(reinterpret_cast<const std::byte*>(t.bytes.data()));
  w->finish();
}

const detail::WriterExtras kNameTable{{{"encoder.weight", "linear_0.w_0"}, {"encoder.half", "linear_0.b_0"}}};

const char* kCheck = R"PY(
import collections, json, pickle, struct, zipfile
import numpy as np, torch

m = json.load(open('manifest.json'))
NP = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'BF16': '<u2', 'I64': '<i8', 'I32': '<i4',
      'I16': '<i2', 'I8': '|i1', 'U8': '|u1', 'BOOL': '|b1'}
TORCH = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
         'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
         'U8': torch.uint8, 'BOOL': torch.bool}
raw = lambda t: bytes.fromhex(t['hex'])

def check(cond, what):
    if not cond: raise SystemExit('FAILED: ' + what)

def check_zip(path, prefix_names):
    with zipfile.ZipFile(path) as z:
        check(z.testzip() is None, path + ': CRC')
        check([i.filename for i in z.infolist()] == prefix_names, path + ': names %s' % z.namelist()[:5])
        with open(path, 'rb') as f:
            for i in z.infolist():
                check(i.compress_type == zipfile.ZIP_STORED, path + ': stored')
                f.seek(i.header_offset)
                h = f.read(30)
                n, e = struct.unpack('<HH', h[26:30])
                check((i.header_offset + 30 + n + e) % 64 == 0, path + ': alignment of ' + i.filename)

for name, tensors in m['sets'].items():
    names = [t['name'] for t in tensors]
    # --- .pt, through the weights-only unpickler and the ordinary one
    for weights_only in (True, False):
        sd = torch.load(name + '.pt', weights_only=weights_only)
        check(type(sd) is collections.OrderedDict, 'pt: type %s' % type(sd))
        check(list(sd.keys()) == names, 'pt: names')
        for t in tensors:
            x = sd[t['name']]
            check(x.dtype == TORCH[t['dtype']], 'pt: dtype of ' + t['name'])
            check(list(x.shape) == t['shape'], 'pt: shape of ' + t['name'])
            check(x.is_contiguous() and not x.requires_grad, 'pt: layout of ' + t['name'])
            y = x.view(torch.int16) if x.dtype == torch.bfloat16 else x
            check(y.numpy().tobytes() == raw(t), 'pt: values of ' + t['name'])
    check_zip(name + '.pt', ['archive/data.pkl'] + ['archive/data/%d' % i for i in range(len(tensors))] +
              ['archive/version'])
    check(zipfile.ZipFile(name + '.pt').read('archive/version') == b'3\n', 'pt: version')

    # --- .pdparams, read as paddle.load reads it
    with open(name + '.pdparams', 'rb') as f:
        d = pickle.load(f, encoding='latin1')
    check(type(d) is dict, 'pdparams: type')
    table = m['name_tables'][name]
    check(list(d.keys()) == names + (['StructuredToParameterName@@'] if table else []), 'pdparams: keys')
    for t in tensors:
        a = d[t['name']]
        check(isinstance(a, np.ndarray) and a.flags.c_contiguous, 'pdparams: array ' + t['name'])
        check(a.dtype.str == NP[t['dtype']], 'pdparams: dtype of %s: %s' % (t['name'], a.dtype.str))
        check(list(a.shape) == t['shape'], 'pdparams: shape of ' + t['name'])
        check(a.tobytes() == raw(t), 'pdparams: values of ' + t['name'])
    if table:
        check(d['StructuredToParameterName@@'] == dict(table), 'pdparams: name table')

    # --- .npz (no BF16: numpy has none)
    npz_tensors = [t for t in tensors if t['dtype'] != 'BF16']
    with np.load(name + '.npz') as z:
        check(z.files == [t['name'] for t in npz_tensors], 'npz: names %s' % z.files[:5])
        for t in npz_tensors:
            a = z[t['name']]
            check(a.dtype.str == NP[t['dtype']] and list(a.shape) == t['shape'], 'npz: type of ' + t['name'])
            check(a.tobytes() == raw(t), 'npz: values of ' + t['name'])
    check_zip(name + '.npz', [t['name'] + '.npy' for t in npz_tensors])

# --- the pieces: a plain zip, and pickled integers at both protocols
with zipfile.ZipFile('plain.zip') as z:
    check(z.testzip() is None, 'plain.zip CRC')
    check([(i.filename, z.read(i)) for i in z.infolist()] ==
          [('empty', b''), ('dir/ünïcode.txt', b'hello, zip'), ('big', bytes(range(256)) * 300)], 'plain.zip')
ints = (0, 255, 256, 65535, 65536, -1, -2**31, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, -2**63, 2**64 - 1)
for p in (2, 4):
    with open('ints%d.pkl' % p, 'rb') as f:
        got = pickle.load(f)
    check(got == (ints, 'héllo', (), (1,), (1, 2, 3, 4), None, True, False), 'pickle %d: %r' % (p, got))
print('ok')
)PY";

nlohmann::json manifest_of(const std::vector<Tensor>& tensors) {
  nlohmann::json out = nlohmann::json::array();
  for (const Tensor& t : tensors) {
    out.push_back({{"name", t.info.name}, {"dtype", std::string(dtype_name(t.info.dtype))},
                   {"shape", t.info.shape}, {"hex", test::to_hex(t.bytes.data(), t.bytes.size())}});
  }
  return out;
}

void write_pieces(const TempDir& dir) {
  {
    detail::AtomicFile file(dir.file("plain.zip"));
    detail::ZipWriter zip(file, 0);
    zip.begin_entry("empty", 0);
    const std::string hello = "hello, zip";
    zip.begin_entry("dir/\xc3\xbcn\xc3\xaf" "code.txt", hello.size());
    zip.write(hello.data(), 4);  // in pieces
    zip.write(hello.data() + 4, hello.size() - 4);
    std::string big;
    for (int r = 0; r < 300; ++r) {
      for (int i = 0; i < 256; ++i) big += static_cast<char>(i);
    }
    zip.begin_entry("big", big.size());
    zip.write(big.data(), big.size());
    zip.finish();
    file.commit();
  }
  for (int protocol : {2, 4}) {
    detail::PickleEmitter p(protocol);
    p.mark().mark();
    for (std::int64_t v : {std::int64_t{0}, std::int64_t{255}, std::int64_t{256}, std::int64_t{65535},
                           std::int64_t{65536}, std::int64_t{-1}, std::int64_t{INT32_MIN}, std::int64_t{INT32_MAX},
                           std::int64_t{2147483648}, std::int64_t{-2147483649}, INT64_MAX, INT64_MIN}) {
      p.integer(v);
    }
    p.uinteger(UINT64_MAX).tuple(13);
    p.str("h\xc3\xa9llo").empty_tuple().uint_tuple({1}).uint_tuple({1, 2, 3, 4}).none().boolean(true).boolean(false);
    p.tuple(8).stop();
    test::write_bytes(dir.file("ints" + std::to_string(protocol) + ".pkl"), p.take());
  }
}

void expect_same(CheckpointReader& r, const std::vector<Tensor>& tensors) {
  ASSERT_EQ(r.tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].info.name);
    EXPECT_EQ(r.tensors()[i].name, tensors[i].info.name);
    EXPECT_EQ(r.tensors()[i].dtype, tensors[i].info.dtype);
    EXPECT_EQ(r.tensors()[i].shape, tensors[i].info.shape);
    const TensorView v = r.tensor(i);
    ASSERT_EQ(v.nbytes(), tensors[i].bytes.size());
    if (v.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(v.data, tensors[i].bytes.data(), tensors[i].bytes.size()), 0);
    }
    r.release(i);
  }
}

TEST(CheckpointWriters, RealFrameworksLoadWhatWasWritten) {
  if (!test::python_has("torch")) GTEST_SKIP() << "needs /usr/bin/python3 with torch and numpy (python3-torch)";
  TempDir dir;
  const std::map<std::string, std::vector<Tensor>> sets{
      {"model", every_dtype()}, {"many", many_scalars()}, {"none", {}}};
  nlohmann::json manifest;
  for (const auto& [name, tensors] : sets) {
    const detail::WriterExtras extras = name == "model" ? kNameTable : detail::WriterExtras{};
    write_file("pt", dir.file(name + ".pt"), tensors);
    write_file("pdparams", dir.file(name + ".pdparams"), tensors, extras);
    write_file("npz", dir.file(name + ".npz"), without_bf16(tensors));
    manifest["sets"][name] = manifest_of(tensors);
    manifest["name_tables"][name] = extras.paddle_name_table;
  }
  write_pieces(dir);
  test::write_bytes(dir.file("manifest.json"), manifest.dump());
  ASSERT_EQ(test::run_python(dir.path(), "check", kCheck), 0) << read_bytes(dir.file("check.log"));
  EXPECT_NE(read_bytes(dir.file("check.log")).find("ok"), std::string::npos);
}

TEST(CheckpointWriters, WqReadsBackWhatItWrote) {
  TempDir dir;
  const std::vector<Tensor> tensors = every_dtype();
  write_file("safetensors", dir.file("m.safetensors"), tensors);
  detail::SafetensorsFile st(dir.file("m.safetensors"));
  EXPECT_EQ(st.metadata().at("format"), "pt");
  ASSERT_EQ(st.entries().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(st.entries()[i].name, tensors[i].info.name);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(st.data(st.entries()[i])), st.entries()[i].bytes()),
              tensors[i].bytes);
  }

  write_file("npz", dir.file("m.npz"), without_bf16(tensors));
  expect_same(*detail::open_npz(dir.file("m.npz")), without_bf16(tensors));

  write_file("pt", dir.file("m.pt"), tensors);
  EXPECT_FALSE(detail::sniff_npz(dir.file("m.pt")));  // a torch zip is not an .npz
  EXPECT_TRUE(detail::sniff_npz(dir.file("m.npz")));
  expect_same(*open_checkpoint(dir.file("m.pt")), tensors);
  write_file("pdparams", dir.file("m.pdparams"), tensors, kNameTable);
  expect_same(*open_checkpoint(dir.file("m.pdparams")), tensors);  // uint16 comes back as BF16
}

void expect_error(ErrorCode code, const std::string& needle, const std::function<void()>& action) {
  SCOPED_TRACE(needle);
  try {
    action();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CheckpointWriters, MisuseIsRefusedAndLeavesNothingBehind) {
  TempDir dir;
  const std::vector<Tensor> tensors = every_dtype();
  const std::string out = dir.file("out.bin");
  expect_error(ErrorCode::kUsage, "'onnx'", [&] { detail::make_checkpoint_writer("onnx", out, infos(tensors), {}); });
  expect_error(ErrorCode::kUnsupported, "'encoder.bf16' is BF16",
               [&] { detail::make_checkpoint_writer("npz", out, infos(tensors), {}); });
  std::vector<TensorInfo> twice = infos(tensors);
  twice.push_back(twice[0]);
  expect_error(ErrorCode::kBadFormat, "'encoder.weight'", [&] { detail::make_checkpoint_writer("pt", out, twice, {}); });
  expect_error(ErrorCode::kOutput, dir.file("no/such/folder"), [&] {
    detail::make_checkpoint_writer("pt", dir.file("no/such/folder/x.pt"), infos(tensors), {});
  });

  for (const std::string format : {"safetensors", "pt", "pdparams", "npz"}) {
    SCOPED_TRACE(format);
    const std::vector<Tensor> set = without_bf16(tensors);
    {  // finished too early, then abandoned
      const auto w = detail::make_checkpoint_writer(format, out, infos(set), {});
      w->add(reinterpret_cast<const std::byte*>(set[0].bytes.data()));
      expect_error(ErrorCode::kInternal, "finished after 1 of", [&] { w->finish(); });
    }
    {  // one tensor too many
      const auto w = detail::make_checkpoint_writer(format, out, infos({set[0]}), {});
      w->add(reinterpret_cast<const std::byte*>(set[0].bytes.data()));
      expect_error(ErrorCode::kInternal, "more tensors", [&] { w->add(reinterpret_cast<const std::byte*>(set[0].bytes.data())); });
    }
    EXPECT_TRUE(dir.listing().empty()) << "left " << dir.listing().front();
  }
}

// (The frameworks' view of empty files is checked with the others, as the set "none".)
TEST(CheckpointWriters, NoTensorsIsAValidEmptyCheckpoint) {
  TempDir dir;
  write_file("npz", dir.file("empty.npz"), {});
  EXPECT_TRUE(detail::open_npz(dir.file("empty.npz"))->tensors().empty());
  write_file("safetensors", dir.file("empty.safetensors"), {});
  EXPECT_TRUE(detail::SafetensorsFile(dir.file("empty.safetensors")).entries().empty());
}

}  // namespace
}  // namespace wq
