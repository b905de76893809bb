// PyTorch and Paddle checkpoints written by the real frameworks (torch and numpy+pickle at
// test time) read back tensor for tensor: names, dtypes, shapes and bytes.
#include <gtest/gtest.h>

#include <sstream>

#include "formats/file_support.h"
#include "formats/pickle/unpickler.h"
#include "formats/python_fixture.h"
#include "formats/state_dict_walk.h"
#include "formats/zip_reader.h"
#include "wq/checkpoint.h"
#include "wq/error.h"

namespace wq {
namespace {

using test::TempDir;

// Writes each checkpoint plus, per file, a listing "name dtype dims..." and the expected
// bytes of every tensor (contiguous, little-endian) as <file>.ref/<index>.bin.
const char* kMakeFixtures = R"PY(
import collections, os, pickle, numpy as np, torch
torch.manual_seed(0)
rng = np.random.default_rng(0)
DT = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float64: 'F64',
      torch.int64: 'I64', torch.int32: 'I32', torch.int16: 'I16', torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL'}
def ref(path, items):
    os.makedirs(path + '.ref', exist_ok=True)
    with open(path + '.ref/list', 'w') as f:
        for i, (name, dtype, shape, raw) in enumerate(items):
            f.write(' '.join([name, dtype] + [str(d) for d in shape]) + '\n')
            open(f'{path}.ref/{i}.bin', 'wb').write(raw)
def torch_items(sd, prefix=''):
    out = []
    for k, v in sd.items():
        if isinstance(v, dict): out += torch_items(v, prefix + k + '.')
        elif isinstance(v, torch.Tensor):
            c = v.contiguous()
            raw = c.view(torch.int16).numpy().tobytes() if c.dtype == torch.bfloat16 else c.numpy().tobytes()
            out.append((prefix + k, DT[v.dtype], list(v.shape), raw))
    return out
sd = collections.OrderedDict()
sd['conv.weight'] = torch.randn(8, 3, 3, 3)
sd['conv.bias'] = torch.randn(8)
sd['fc.weight'] = torch.randn(10, 72).half()
sd['fc.double'] = torch.randn(3, 4).double()
sd['bf'] = torch.randn(4, 4).bfloat16()
sd['bn.num_batches_tracked'] = torch.tensor(5)
sd['ints'] = torch.arange(12, dtype=torch.int32).reshape(3, 4)
sd['mask'] = torch.rand(5) > 0.5
sd['bytes'] = torch.arange(6, dtype=torch.uint8)
base = torch.randn(6, 5)
sd['view_t'] = base.t()
sd['view_row'] = base[2]
sd['view_cols'] = base[:, 1:4]
sd['shared'] = base
sd['empty'] = torch.zeros(0, 3)
torch.save(sd, 'zip.pt'); ref('zip.pt', torch_items(sd))
torch.save(sd, 'legacy.pt', _use_new_zipfile_serialization=False); ref('legacy.pt', torch_items(sd))
nested = {'state_dict': sd, 'epoch': 7, 'optimizer': {'lr': 0.1}}
torch.save(nested, 'nested.pth'); ref('nested.pth', torch_items(nested))
# A module's state_dict (OrderedDict + _metadata BUILD) saved to a buffer: top folder 'archive'.
model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
import io
buf = io.BytesIO(); torch.save(model.state_dict(), buf); open('module.pt', 'wb').write(buf.getvalue())
ref('module.pt', torch_items(model.state_dict()))
# Paddle-style pickles of numpy arrays.
arrays = collections.OrderedDict()
arrays['linear.weight'] = rng.standard_normal((10, 16)).astype(np.float32)
arrays['linear.bias'] = rng.standard_normal(10).astype(np.float32)
arrays['conv.w'] = np.asfortranarray(rng.standard_normal((4, 3, 2, 2)).astype(np.float32))
arrays['be'] = rng.standard_normal((3, 5)).astype('>f4')
arrays['half'] = rng.standard_normal((6, 6)).astype(np.float16)
arrays['i64'] = np.arange(7, dtype=np.int64)
arrays['empty'] = np.zeros((0,), np.float32)
def np_items(d):
    return [(k, {'float32': 'F32', 'float16': 'F16', 'int64': 'I64'}[v.dtype.name], list(v.shape),
             np.ascontiguousarray(v).astype(v.dtype.newbyteorder('<')).tobytes()) for k, v in d.items()]
for proto in (2, 4, 5):
    d = dict(arrays); d['StructuredToParameterName@@'] = {'linear.weight': 'linear_0.w_0'}
    pickle.dump(d, open(f'p{proto}.pdparams', 'wb'), protocol=proto); ref(f'p{proto}.pdparams', np_items(arrays))
w = rng.standard_normal((6, 4)).astype(np.float32); flat = w.reshape(-1)
big = {'w@@.0': flat[:10], 'w@@.1': flat[10:], 'b': np.ones(3, np.float32),
       'UnpackBigParamInfor@@': {'w': {'OriginShape': (6, 4), 'slices': ['w@@.0', 'w@@.1']}}}
pickle.dump(big, open('big.pdparams', 'wb'), protocol=2)
ref('big.pdparams', [('w', 'F32', [6, 4], w.tobytes()), ('b', 'F32', [3], big['b'].tobytes())])
pickle.dump({'model': {'fc': ('linear_1.w_0', w)}, 'epoch': 2}, open('nested.pdparams', 'wb'), protocol=4)
ref('nested.pdparams', [('model.fc', 'F32', [6, 4], w.tobytes())])
# Broadcast views (expand: stride 0), read as their dense copies.
bc = collections.OrderedDict([('b', torch.arange(3.).expand(500, 3)), ('row', torch.arange(4.).expand(1, 4)),
                              ('col', torch.arange(2.).reshape(2, 1).expand(2, 6))])
torch.save(bc, 'broadcast.pt'); ref('broadcast.pt', torch_items(bc))
# Many tensors with short names: the densest pickles, for the unpickler's memory budget.
many = collections.OrderedDict((str(i), torch.zeros(2, 2)) for i in range(2000))
torch.save(many, 'many.pt')
for proto in (2, 4):
    pickle.dump({'p%d' % i: np.zeros((2, 2), np.float32) for i in range(2000)}, open('many_p%d.pdparams' % proto, 'wb'),
                protocol=proto)
bf = (rng.standard_normal((2, 8)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
pickle.dump({'bf': bf}, open('bf16.pdparams', 'wb'), protocol=4); ref('bf16.pdparams', [('bf', 'BF16', [2, 8], bf.tobytes())])
print('made')
)PY";

class FrameworkFiles : public ::testing::TestWithParam<const char*> {
 public:
  static void SetUpTestSuite() {
    if (!test::python_has("torch")) return;
    dir_ = new TempDir();
    made_ = test::run_python(dir_->path(), "make", kMakeFixtures) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

 protected:
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "needs /usr/bin/python3 with torch and numpy (python3-torch)";
    ASSERT_TRUE(made_) << test::read_bytes(dir_->file("make.log"));
  }
  static TempDir* dir_;
  static bool made_;
};
TempDir* FrameworkFiles::dir_ = nullptr;
bool FrameworkFiles::made_ = false;

TEST_P(FrameworkFiles, EveryTensorMatchesWhatTheFrameworkSaved) {
  const std::string path = dir_->file(GetParam());
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(path);
  std::istringstream list(test::read_bytes(path + ".ref/list"));
  std::string line;
  std::size_t index = 0;
  while (std::getline(list, line)) {
    std::istringstream fields(line);
    std::string name, dtype;
    fields >> name >> dtype;
    Shape shape;
    for (std::uint64_t d; fields >> d;) shape.push_back(d);
    SCOPED_TRACE(name);
    ASSERT_LT(index, reader->tensors().size());
    const TensorInfo& info = reader->tensors()[index];
    EXPECT_EQ(info.name, name);
    EXPECT_EQ(dtype_name(info.dtype), dtype);
    EXPECT_EQ(info.shape, shape);
    const TensorView view = reader->tensor(index);
    const std::string expected = test::read_bytes(path + ".ref/" + std::to_string(index) + ".bin");
    ASSERT_EQ(view.nbytes(), expected.size());
    if (!expected.empty()) {  // an empty tensor may have no data pointer at all
      EXPECT_EQ(std::memcmp(view.data, expected.data(), expected.size()), 0);
    }
    ++index;
  }
  EXPECT_EQ(index, reader->tensors().size());
  for (std::size_t i = 0; i < index; ++i) reader->release(i);
}

INSTANTIATE_TEST_SUITE_P(Files, FrameworkFiles,
                         ::testing::Values("zip.pt", "legacy.pt", "nested.pth", "module.pt", "p2.pdparams",
                                           "p4.pdparams", "p5.pdparams", "big.pdparams", "nested.pdparams",
                                           "bf16.pdparams", "broadcast.pt"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

TEST_F(FrameworkFiles, BroadcastViewsLargerThanTheLimitAreRefusedByName) {
  ReadOptions small;
  small.max_expanded_view_bytes = 1000;  // 'b' is 6000 bytes from 12; 'row' and 'col' fit
  try {
    open_checkpoint(dir_->file("broadcast.pt"), small);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("tensor 'b'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("6000"), std::string::npos) << e.what();
  }
  small.max_expanded_view_bytes = 6000;
  EXPECT_EQ(open_checkpoint(dir_->file("broadcast.pt"), small)->tensors().size(), 3u);
}

// The unpickler's budget (host/formats/pickle/unpickler.h) against the densest real pickles:
// what loading and walking them charges stays below half of it, so a real checkpoint is never
// refused for its memory.
TEST_F(FrameworkFiles, RealPicklesUseLessThanHalfTheMemoryBudget) {
  const auto charged = [](const std::string& bytes, const std::string& label) {
    detail::pickle::Arena arena;
    detail::pickle::Unpickler u(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), label, arena,
                                [&](detail::pickle::Value* pid) { return pid; });
    const detail::pickle::Value* root = u.load();
    std::size_t leaves = 0;
    detail::walk_state_dict(root, label, arena, [](const detail::pickle::Value* v) {
      return v->is_object("torch.tensor") || v->is_object("numpy.ndarray");
    }, [&](const std::string&, const detail::pickle::Value*) { ++leaves; });
    EXPECT_EQ(leaves, 2000u) << label;
    return static_cast<double>(arena.used()) / static_cast<double>(bytes.size());
  };
  detail::ZipReader zip(dir_->file("many.pt"));
  std::vector<std::byte> pkl;
  zip.read(static_cast<std::size_t>(zip.find("many/data.pkl")), &pkl, false);
  const std::vector<std::pair<std::string, std::string>> pickles = {
      {"many.pt:data.pkl", std::string(reinterpret_cast<const char*>(pkl.data()), pkl.size())},
      {"many_p2.pdparams", test::read_bytes(dir_->file("many_p2.pdparams"))},
      {"many_p4.pdparams", test::read_bytes(dir_->file("many_p4.pdparams"))}};
  for (const auto& [label, bytes] : pickles) {
    const double per_byte = charged(bytes, label);
    RecordProperty(label, std::to_string(per_byte));
    EXPECT_LT(per_byte, detail::pickle::Unpickler::kBudgetPerInputByte / 2.0) << label << ": " << per_byte << " bytes per byte";
  }
}

TEST_F(FrameworkFiles, TruncatedAndCorruptedFilesGiveClearErrors) {
  for (const char* name : {"zip.pt", "legacy.pt", "p2.pdparams", "p4.pdparams"}) {
    const std::string good = test::read_bytes(dir_->file(name));
    for (const double fraction : {0.2, 0.5, 0.9, 0.99}) {
      const std::string path = dir_->file(std::string("cut_") + name);
      test::write_bytes(path, good.substr(0, static_cast<std::size_t>(static_cast<double>(good.size()) * fraction)));
      SCOPED_TRACE(std::string(name) + " cut at " + std::to_string(fraction));
      try {
        std::unique_ptr<CheckpointReader> r = open_checkpoint(path);
        for (std::size_t i = 0; i < r->tensors().size(); ++i) r->tensor(i);
        ADD_FAILURE() << "a truncated file was read";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace wq
