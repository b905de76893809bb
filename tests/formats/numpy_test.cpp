// The .npy/.npz readers against files written by real numpy (every supported dtype, Fortran
// order, big-endian, header versions 2.0/3.0, 0-d and zero-size arrays, np.savez and
// np.savez_compressed), and against damaged files: every one a clear error, never a crash.
#include <gtest/gtest.h>

#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "formats/file_support.h"
#include "formats/npy_format.h"
#include "formats/numpy_reader.h"
#include "formats/python_fixture.h"
#include "test_support.h"
#include "wq/error.h"

namespace wq {
namespace {

using test::read_bytes;
using test::TempDir;
using test::write_bytes;

// Writes every fixture plus, per array, the bytes it must read as (C order, little-endian)
// and a manifest of what each file holds.
const char* kMakeFixtures = R"PY(
import io, json, zipfile
import numpy as np
from numpy.lib import format as npf

manifest = []
def expect(file, name, a, member=None):
    raw = (file + ('__' + member if member else '') + '.raw')
    c = np.ascontiguousarray(a).astype(a.dtype.newbyteorder('<'))
    with open(raw, 'wb') as f: f.write(c.tobytes(order='C'))
    manifest.append(dict(file=file, member=member, name=name, dtype=a.dtype.str[1:],
                         shape=list(a.shape), raw=raw))

def values(shape, dtype):
    n = int(np.prod(shape))
    if dtype == '?': return (np.arange(n) % 3 == 1).reshape(shape)
    v = np.arange(n, dtype=np.float64) * 1.25 - 3
    return v.astype(dtype).reshape(shape)

for code in ['f8', 'f4', 'f2', 'i8', 'i4', 'i2', 'i1', 'u1', '?']:
    a = values((2, 3), code)
    name = 'd_' + a.dtype.str[1:]
    np.save(name + '.npy', a); expect(name + '.npy', name, a)

layouts = {
    'fortran': np.asfortranarray(values((3, 4), 'f4')),
    'fortran3d': np.asfortranarray(values((2, 3, 4), 'i2')),
    'bigend': values((2, 3), '>f8'),
    'bigend_fortran': np.asfortranarray(values((3, 2), '>i4')),
    'fortran1d': np.asfortranarray(values((5,), 'f4')),
    'scalar': np.array(2.5),
    'empty': np.zeros((0, 4), np.float32),
    'empty_fortran': np.asfortranarray(np.zeros((3, 0), np.int64)),
}
for name, a in layouts.items():
    np.save(name + '.npy', a); expect(name + '.npy', name, a)
for version in [(2, 0), (3, 0)]:
    name = 'v%d' % version[0]
    a = values((4, 2), 'f4')
    with open(name + '.npy', 'wb') as f: npf.write_array(f, a, version=version)
    expect(name + '.npy', name, a)

# Arrays numpy can save but wq has no type for.
np.save('u2.npy', np.arange(4, dtype=np.uint16))
np.save('c8.npy', np.zeros(2, np.complex64))
np.save('obj.npy', np.array([1, 'x', None], dtype=object), allow_pickle=True)
np.save('struct.npy', np.zeros(2, dtype=[('a', '<f4'), ('b', '<i2')]))
np.save('str.npy', np.array(['ab', 'cd']))

arrays = {'w': values((3, 5), 'f4'), 'layer.0.bias': values((5,), 'f2'),
          'ft': np.asfortranarray(values((2, 3), 'f8')), 'be': values((3,), '>i8'),
          's': np.array(7, np.int64), 'e': np.zeros((0,), np.uint8),
          'big': values((300, 257), 'f4')}
np.savez('stored.npz', **arrays)
np.savez_compressed('deflated.npz', **arrays)
for file in ['stored.npz', 'deflated.npz']:
    for name, a in arrays.items(): expect(file, name, a, member=name)

# The header bytes np.save writes, which format_npy_header must reproduce exactly.
headers = []
for shape, dtype in [((), 'f4'), ((5,), '?'), ((2, 3), 'i8'), ((0, 4), 'u1'),
                     ((1, 2, 3, 4, 5), 'f2'), ((12345678901,), 'i1'), ((7, 1), 'f8')]:
    b = io.BytesIO()
    npf.write_array_header_1_0(b, {'descr': np.dtype(dtype).str, 'fortran_order': False, 'shape': shape})
    headers.append(dict(dtype=np.dtype(dtype).str[1:], shape=list(shape), hex=b.getvalue().hex()))

# Zips that are damaged in the ways a reader must notice.
with zipfile.ZipFile('short_member.npz', 'w') as z:
    b = io.BytesIO(); np.save(b, values((4, 4), 'f4'))
    z.writestr('x.npy', b.getvalue()[:-8])
with zipfile.ZipFile('not_npy.npz', 'w') as z:
    z.writestr('readme.txt', 'hello')
with zipfile.ZipFile('dup.npz', 'w') as z:
    b = io.BytesIO(); np.save(b, values((2,), 'f4'))
    z.writestr('a.npy', b.getvalue())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        z.writestr('a.npy', b.getvalue())

json.dump(dict(arrays=manifest, headers=headers), open('manifest.json', 'w'))
print('ok')
)PY";

class NumpyFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_has("numpy")) {
      skip_reason_ = "needs /usr/bin/python3 with numpy (python3-numpy)";
      return;
    }
    dir_ = new TempDir();
    if (test::run_python(dir_->path(), "make_fixtures", kMakeFixtures) != 0) {
      skip_reason_ = "fixture script failed: " + read_bytes(dir_->file("make_fixtures.log"));
      failed_ = true;
      return;
    }
    manifest_ = nlohmann::json::parse(read_bytes(dir_->file("manifest.json")));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(failed_) << skip_reason_;
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  }

  static std::string file(const std::string& name) { return dir_->file(name); }

  static void expect_tensor(CheckpointReader& r, std::size_t i, const nlohmann::json& m) {
    SCOPED_TRACE(m.dump());
    const TensorInfo& info = r.tensors().at(i);
    EXPECT_EQ(info.name, m["name"].get<std::string>());
    EXPECT_EQ(info.shape, m["shape"].get<Shape>());
    const std::string want = read_bytes(file(m["raw"]));
    const TensorView v = r.tensor(i);
    EXPECT_EQ(v.name, info.name);
    EXPECT_EQ(v.dtype, info.dtype);
    ASSERT_EQ(v.nbytes(), want.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data), want.size()), want);
  }

  static inline TempDir* dir_ = nullptr;
  static inline nlohmann::json manifest_;
  static inline std::string skip_reason_;
  static inline bool failed_ = false;
};

DType dtype_of(const std::string& numpy_code) {
  static const std::map<std::string, DType> kMap{
      {"f8", DType::kF64}, {"f4", DType::kF32}, {"f2", DType::kF16}, {"i8", DType::kI64},
      {"i4", DType::kI32}, {"i2", DType::kI16}, {"i1", DType::kI8},  {"u1", DType::kU8},
      {"b1", DType::kBool}};
  return kMap.at(numpy_code);
}

TEST_F(NumpyFiles, NpyOfEveryDtypeAndLayoutReadsAsNumpyWroteIt) {
  int checked = 0;
  for (const auto& m : manifest_["arrays"]) {
    if (!m["member"].is_null()) continue;
    const std::unique_ptr<CheckpointReader> r = detail::open_npy(file(m["file"]));
    EXPECT_EQ(r->format(), "npy");
    ASSERT_EQ(r->tensors().size(), 1u);
    EXPECT_EQ(r->tensors()[0].dtype, dtype_of(m["dtype"])) << m.dump();
    expect_tensor(*r, 0, m);
    r->release(0);
    expect_tensor(*r, 0, m);  // converted again after release
    ++checked;
  }
  EXPECT_EQ(checked, 19);
}

TEST_F(NumpyFiles, NativeNpyIsAZeroCopyViewOfTheFile) {
  const std::unique_ptr<CheckpointReader> r = detail::open_npy(file("d_f4.npy"));
  const TensorView a = r->tensor(0);
  r->release(0);
  EXPECT_EQ(r->tensor(0).data, a.data);  // the same mapping: nothing was copied
}

TEST_F(NumpyFiles, NpzStoredAndDeflatedReadInArchiveOrder) {
  for (const std::string archive : {"stored.npz", "deflated.npz"}) {
    SCOPED_TRACE(archive);
    const std::unique_ptr<CheckpointReader> r = detail::open_npz(file(archive));
    EXPECT_EQ(r->format(), "npz");
    std::vector<nlohmann::json> members;
    for (const auto& m : manifest_["arrays"]) {
      if (m["file"] == archive) members.push_back(m);
    }
    ASSERT_EQ(r->tensors().size(), members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
      EXPECT_EQ(r->tensors()[i].dtype, dtype_of(members[i]["dtype"]));
      expect_tensor(*r, i, members[i]);
      r->release(i);
    }
    expect_tensor(*r, 0, members[0]);  // read again after release
    EXPECT_TRUE(detail::sniff_npz(file(archive)));
  }
  EXPECT_FALSE(detail::sniff_npz(file("d_f4.npy")));
}

TEST_F(NumpyFiles, HeaderFormattingMatchesNpSaveByteForByte) {
  for (const auto& h : manifest_["headers"]) {
    const std::string ours = detail::format_npy_header(dtype_of(h["dtype"]), h["shape"].get<Shape>());
    EXPECT_EQ(test::to_hex(ours.data(), ours.size()), h["hex"].get<std::string>()) << h["shape"].dump();
    EXPECT_EQ(ours.size() % 64, 0u);
  }
}

void expect_error(ErrorCode code, const std::string& path, const std::string& needle,
                  const std::function<void()>& action) {
  SCOPED_TRACE(path + " / " + needle);
  try {
    action();
    ADD_FAILURE() << "accepted; expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "error does not name the file: " << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(NumpyFiles, DtypesWithoutAWqTypeAreRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"u2.npy", "uint16"}, {"c8.npy", "'<c8'"}, {"obj.npy", "'|O'"}, {"struct.npy", "structured"},
      {"str.npy", "'<U2'"}};
  for (const auto& [name, needle] : cases) {
    expect_error(ErrorCode::kUnsupported, file(name), needle, [&] { detail::open_npy(file(name)); });
  }
}

TEST_F(NumpyFiles, DamagedArchivesAreClearErrors) {
  expect_error(ErrorCode::kBadFormat, "member 'x.npy'", "truncated",
               [&] { detail::open_npz(file("short_member.npz")); });
  expect_error(ErrorCode::kUnsupported, "member 'readme.txt'", "not an .npy",
               [&] { detail::open_npz(file("not_npy.npz")); });
  expect_error(ErrorCode::kBadFormat, file("dup.npz"), "same name", [&] { detail::open_npz(file("dup.npz")); });

  // Cut short: the central directory is gone.
  const std::string stored = read_bytes(file("stored.npz"));
  write_bytes(file("cut.npz"), stored.substr(0, stored.size() - 300));
  expect_error(ErrorCode::kBadFormat, file("cut.npz"), "zip", [&] { detail::open_npz(file("cut.npz")); });
  write_bytes(file("cut_early.npz"), stored.substr(0, 1000));
  expect_error(ErrorCode::kBadFormat, file("cut_early.npz"), "zip", [&] { detail::open_npz(file("cut_early.npz")); });

  // A flipped data byte: caught by the CRC when the tensor is read, naming the member.
  std::string flipped = stored;
  const std::size_t at = flipped.find("big.npy") + 7 + 1000;  // inside big's data
  flipped[at] = static_cast<char>(flipped[at] ^ 0x40);
  write_bytes(file("flipped.npz"), flipped);
  const std::unique_ptr<CheckpointReader> r = detail::open_npz(file("flipped.npz"));
  ASSERT_EQ(r->tensors().back().name, "big");
  expect_error(ErrorCode::kBadFormat, "member 'big.npy'", "CRC", [&] { r->tensor(r->tensors().size() - 1); });

  // Damaged compressed data.
  std::string deflated = read_bytes(file("deflated.npz"));
  const std::size_t big = deflated.find("big.npy");
  ASSERT_NE(big, std::string::npos);
  for (std::size_t i = big + 200; i < big + 400; ++i) deflated[i] = '\x55';
  write_bytes(file("bad_deflate.npz"), deflated);
  expect_error(ErrorCode::kBadFormat, "member 'big.npy'", "", [&] {
    const std::unique_ptr<CheckpointReader> d = detail::open_npz(file("bad_deflate.npz"));
    for (std::size_t i = 0; i < d->tensors().size(); ++i) d->tensor(i);
  });

  // Cut anywhere, every file is refused cleanly (or, cut inside unread slack, still reads).
  for (std::size_t size = 0; size < stored.size(); size += 4099) {
    write_bytes(file("cut_any.npz"), stored.substr(0, size));
    try {
      const std::unique_ptr<CheckpointReader> c = detail::open_npz(file("cut_any.npz"));
      for (std::size_t i = 0; i < c->tensors().size(); ++i) c->tensor(i);
      ADD_FAILURE() << "a cut archive of " << size << " bytes was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat) << e.what();
    }
  }
  const std::string npy = read_bytes(file("d_f4.npy"));
  for (std::size_t size = 0; size < npy.size(); ++size) {
    write_bytes(file("cut_any.npy"), npy.substr(0, size));
    EXPECT_THROW(detail::open_npy(file("cut_any.npy")), Error) << size;
  }

  expect_error(ErrorCode::kInputMissing, file("absent.npz"), "", [&] { detail::open_npz(file("absent.npz")); });
  write_bytes(file("garbage.npz"), std::string(100, 'x'));
  expect_error(ErrorCode::kBadFormat, file("garbage.npz"), "zip", [&] { detail::open_npz(file("garbage.npz")); });
}

// Hand-made damaged .npy files need no Python.
TEST(NpyReader, MalformedFilesAreClearErrors) {
  TempDir dir;
  const auto npy = [](const std::string& header, std::uint8_t major = 1) {
    std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
    const std::size_t n = header.size();
    for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += static_cast<char>((n >> (8 * i)) & 0xFF);
    return out + header;
  };
  const std::string ok_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
  struct Case {
    std::string name, bytes, needle;
    ErrorCode code = ErrorCode::kBadFormat;
  };
  const std::vector<Case> cases{
      {"empty.npy", "", "magic"},
      {"magic.npy", "\x93NUMPX\x01\x00\x00\x00", "magic"},
      {"version.npy", npy(ok_header, 4), "version 4.0"},
      {"cut_header.npy", npy(ok_header).substr(0, 30), "truncated inside the header"},
      {"cut_data.npy", npy(ok_header) + std::string(5, '\0'), "truncated"},
      {"trailing.npy", npy(ok_header) + std::string(9, '\0'), "1 bytes follow"},
      {"huge_header.npy", npy(std::string(10001, ' ')), "10000"},
      {"not_dict.npy", npy("[1, 2]\n"), "expected '{'"},
      {"missing_key.npy", npy("{'descr': '<f4', 'shape': (2,)}\n"), "lacks"},
      {"extra_key.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n"), "unexpected key 'x'"},
      {"repeated_key.npy", npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n"), "repeats"},
      {"int_shape.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}\n"), "tuple"},
      {"negative.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}\n"), "negative"},
      {"float_dim.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}\n"), "tuple of integers"},
      {"bad_bool.npy", npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\n"), "True or False"},
      {"bad_descr.npy", npy("{'descr': 'zz', 'fortran_order': False, 'shape': (2,)}\n"), "not a numpy type"},
      {"unterminated.npy", npy("{'descr: '<f4'}\n"), "expected ':'"},
      {"after_dict.npy", npy(ok_header + "x"), "after its dict"},
      {"overflow.npy", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n"), "too large"},
      {"u8.npy", npy("{'descr': '<u8', 'fortran_order': False, 'shape': (2,)}\n"), "not supported",
       ErrorCode::kUnsupported},
  };
  for (const Case& c : cases) {
    write_bytes(dir.file(c.name), c.bytes);
    expect_error(c.code, dir.file(c.name), c.needle, [&] { detail::open_npy(dir.file(c.name)); });
  }
  expect_error(ErrorCode::kInputMissing, dir.file("absent.npy"), "", [&] { detail::open_npy(dir.file("absent.npy")); });

  // The same parser accepts what numpy accepts beyond what np.save writes.
  write_bytes(dir.file("ok.npy"), npy("{\"shape\":(2L,),'fortran_order':True ,'descr':'f4'}") + std::string(8, '\0'));
  const std::unique_ptr<CheckpointReader> r = detail::open_npy(dir.file("ok.npy"));
  EXPECT_EQ(r->tensors()[0].name, "ok");
  EXPECT_EQ(r->tensors()[0].shape, Shape{2});
  EXPECT_TRUE(detail::sniff_npy(reinterpret_cast<const std::byte*>("\x93NUMPY\x01"), 7));
}

}  // namespace
}  // namespace wq
