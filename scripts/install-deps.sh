#!/usr/bin/env bash
# Installs wq's build and test dependencies from Debian packages (nothing is downloaded at
# build time). Skips apt entirely when everything is already there.
set -euo pipefail
packages=(
  cmake g++ make pkg-config
  libcli11-dev nlohmann-json3-dev libxxhash-dev libfmt-dev   # library and CLI
  libtomlplusplus-dev                                        # TOML rule files (--rules x.toml)
  libzip-dev zlib1g-dev                                      # .pt and .npz archives
  libgtest-dev libgmock-dev libbenchmark-dev                 # tests and benchmarks
  python3 python3-numpy python3-torch                        # reference checks, fixtures
)
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
