#!/usr/bin/env bash
# Installs wq's dependencies from Debian packages (nothing is downloaded at build time). Skips
# apt entirely when everything is already there.
#
# usage: scripts/install-deps.sh            what building and running wq needs (run-example.sh)
#        scripts/install-deps.sh --tests    that, plus what the tests, benchmarks and fuzz
#                                           targets need (run-tests.sh)
#        scripts/install-deps.sh PACKAGE... only the packages named (fuzz-common.sh)
set -euo pipefail
main=(
  cmake g++ make pkg-config
  libcli11-dev nlohmann-json3-dev libxxhash-dev libfmt-dev   # library and CLI
  libtomlplusplus-dev                                        # TOML rule files (--rules x.toml)
  libzip-dev zlib1g-dev                                      # .pt and .npz archives
)
tests=(
  libgtest-dev libgmock-dev libbenchmark-dev                 # tests and benchmarks
  python3 python3-numpy python3-torch                        # reference checks, fixtures
  python3-dev pybind11-dev python3-pytest                    # the Python package and its tests
  clang-16 libclang-rt-16-dev                                # libFuzzer targets (fuzz/, scripts/fuzz.sh)
)
case "${1:-}" in
  "") packages=("${main[@]}") ;;
  --tests) packages=("${main[@]}" "${tests[@]}") ;;
  -*) echo "install-deps: unknown option '$1' (--tests, or package names)" >&2; exit 2 ;;
  *) packages=("$@") ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
