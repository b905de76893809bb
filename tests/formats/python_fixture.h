// Running Debian's python3 (with torch/numpy) to make fixtures at test time.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace wq::test {

inline const char* kSystemPython = "/usr/bin/python3";

/// Whether `/usr/bin/python3 -c "import MODULE"` works; tests skip with the reason otherwise.
inline bool python_has(const std::string& module) {
  const std::string cmd = std::string(kSystemPython) + " -c 'import " + module + "' >/dev/null 2>&1";
  return std::filesystem::exists(kSystemPython) && std::system(cmd.c_str()) == 0;
}

/// Runs a Python script (written to `dir`/name.py) with `dir` as the working directory.
inline int run_python(const std::string& dir, const std::string& name, const std::string& script) {
  const std::string path = dir + "/" + name + ".py";
  std::ofstream(path) << script;
  const std::string cmd = "cd '" + dir + "' && " + kSystemPython + " '" + path + "' >'" + dir + "/" + name + ".log' 2>&1";
  return std::system(cmd.c_str());
}

}  // namespace wq::test
