// The restricted unpickler against real hostile pickles made by Python's pickle module:
// nothing may run, and the error must name the file and the refused symbol.
#include <gtest/gtest.h>

#include "formats/file_support.h"
#include "formats/pickle/unpickler.h"
#include "formats/python_fixture.h"
#include "wq/checkpoint.h"
#include "wq/error.h"

namespace wq {
namespace {

using test::TempDir;

class HostilePickles : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::python_has("torch")) GTEST_SKIP() << "needs /usr/bin/python3 with torch (python3-torch)";
    marker_ = dir_.file("PWNED");
    const std::string script = R"PY(
import os, pickle, subprocess, builtins, collections, zipfile, io, torch
MARK = os.path.abspath('PWNED')
class Sys:
    def __reduce__(self): return (os.system, ('touch ' + MARK,))
class Eval:
    def __reduce__(self): return (builtins.eval, ("__import__('os').system('touch %s')" % MARK,))
class Popen:
    def __reduce__(self): return (subprocess.Popen, (['touch', MARK],))
class Custom:
    pass
def dump(name, obj, proto):
    with open(name, 'wb') as f: pickle.dump(obj, f, protocol=proto)
for proto in (2, 4):
    dump(f'system{proto}.pdparams', {'w': Sys()}, proto)
    dump(f'eval{proto}.pdparams', {'w': Eval()}, proto)
    dump(f'popen{proto}.pdparams', {'w': Popen()}, proto)
    dump(f'custom{proto}.pdparams', {'w': Custom()}, proto)
# getattr(os, 'system')('touch MARK'), written by hand (pickle cannot pickle a module)
with open('getattr.pdparams', 'wb') as f:
    f.write(b'\x80\x02cbuiltins\ngetattr\ncos\nsystem\nX\x06\x00\x00\x00systemq\x00\x86R.')
# A torch zip whose data.pkl was replaced by a malicious pickle.
torch.save(collections.OrderedDict(w=torch.ones(2, 2)), 'good.pt')
with zipfile.ZipFile('good.pt') as src, zipfile.ZipFile('evil.pt', 'w') as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith('data.pkl'):
            data = pickle.dumps({'w': Sys()}, protocol=2)
        dst.writestr(info, data)
print('made')
)PY";
    ASSERT_EQ(test::run_python(dir_.path(), "make_hostile", script), 0) << test::read_bytes(dir_.file("make_hostile.log"));
  }

  void expect_refused(const std::string& name, const std::string& symbol) {
    SCOPED_TRACE(name);
    const std::string path = dir_.file(name);
    try {
      std::unique_ptr<CheckpointReader> r = open_checkpoint(path);
      ADD_FAILURE() << "a hostile pickle was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(symbol), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("nothing was executed"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(marker_)) << "the pickle's payload ran";
  }

  TempDir dir_;
  std::string marker_;
};

TEST_F(HostilePickles, AreRefusedNamingTheSymbolAndNothingRuns) {
  for (const char* proto : {"2", "4"}) {
    expect_refused(std::string("system") + proto + ".pdparams", "posix.system");
    // Protocol 2 spells Python 3's builtins the Python 2 way (fix_imports).
    expect_refused(std::string("eval") + proto + ".pdparams", proto == std::string("2") ? "__builtin__.eval" : "builtins.eval");
    expect_refused(std::string("popen") + proto + ".pdparams", "Popen");  // commands.Popen at protocol 2
    expect_refused(std::string("custom") + proto + ".pdparams", "__main__.Custom");
  }
  expect_refused("getattr.pdparams", "builtins.getattr");
  expect_refused("evil.pt", "posix.system");
  // The untouched torch file next to them loads.
  EXPECT_EQ(open_checkpoint(dir_.file("good.pt"))->tensors().size(), 1u);
}

// Malformed streams: bounded, clear errors, never a crash.
TEST(Unpickler, MalformedStreamsAreErrors) {
  const auto load = [](const std::string& bytes) {
    detail::pickle::Arena arena(1000);
    detail::pickle::Unpickler u(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "t.pkl", arena);
    return u.load();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated", std::string("\x80\x02X\x10\x00\x00\x00" "abc", 10)},
      {"underflow", std::string("\x80\x02t.", 4)},
      {"unbalanced", std::string("\x80\x02NN.", 5)},
      {"missing memo", std::string("\x80\x02h\x05.", 5)},
      {"huge length", std::string("\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.", 12)},
      {"wide long", std::string("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09" ".", 14)},
      {"bad opcode", std::string("\x80\x02I1\n.", 6)},
      {"bad utf8", std::string("\x80\x02X\x02\x00\x00\x00\xff\xfe" ".", 10)},
      {"append to int", std::string("\x80\x02K\x01K\x02" "a.", 8)},
      {"no stop", std::string("\x80\x02N", 3)},
      {"empty", std::string()},
  };
  for (const auto& [name, bytes] : cases) {
    SCOPED_TRACE(name);
    try {
      load(bytes);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
      EXPECT_NE(std::string(e.what()).find("t.pkl"), std::string::npos) << e.what();
    }
  }
  // Too many values for the arena (a hostile fan-out) is an error too, not an OOM.
  std::string many = "\x80\x02]";
  for (int i = 0; i < 2000; ++i) many += "Na";
  many += ".";
  EXPECT_THROW(load(many), Error);
  // A self-referencing list is fine (and freed with the arena).
  EXPECT_NO_THROW(load(std::string("\x80\x02]q\x00h\x00" "a.", 9)));
}

}  // namespace
}  // namespace wq
