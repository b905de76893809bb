#!/usr/bin/env bash
# Builds the Python package `wq` (python/) and installs it for Debian's python3, from a clone,
# with nothing downloaded beyond Debian's packages:
#
#   bash scripts/install-python.sh            into the user's site-packages (python3 -m site --user-site)
#   bash scripts/install-python.sh DIR        into DIR/wq (then PYTHONPATH=DIR)
#
# Afterwards `python3 -c "import wq; print(wq.__version__)"` works from any folder. The package
# is the extension, its Python files and a copy of libwqcuda beside them (the extension finds
# it through $ORIGIN), so the build folder may go. Not pip: Debian's pip refuses to install
# outside a virtual environment (PEP 668), and a venv would not see Debian's numpy and torch.
# WQ_BUILD_TESTS / WQ_BUILD_BENCH (default OFF) pass through to scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-deps.sh python3 python3-dev python3-numpy pybind11-dev
WQ_BUILD_TESTS="${WQ_BUILD_TESTS:-OFF}" WQ_BUILD_BENCH="${WQ_BUILD_BENCH:-OFF}" \
  WQ_CMAKE_ARGS="${WQ_CMAKE_ARGS:-} -DWQ_BUILD_PYTHON=ON" bash scripts/build.sh
python=/usr/bin/python3
target="${1:-$($python -m site --user-site)}"
mkdir -p "$target"
target=$(cd "$target" && pwd)
staging=$(mktemp -d "$target/.wq-install.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir "$staging/wq"
cp build/python/wq/__init__.py build/python/wq/__init__.pyi build/python/wq/py.typed build/python/wq/_wq*.so \
   "$staging/wq/"
cp -P build/host/libwqcuda.so* "$staging/wq/"
# Replace an earlier install whole (never a mix of two versions), then check it imports.
rm -rf "$target/wq"
mv "$staging/wq" "$target/wq"
cd /
PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" $python -c \
  "import wq, os; assert os.path.dirname(wq.__file__) == '$target/wq', wq.__file__; print('installed wq', wq.__version__, 'in', '$target')"
