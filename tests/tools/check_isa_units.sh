#!/bin/bash
# The instruction-set units (file names ending in _avx2.cpp or _avx512.cpp) define no symbol
# that another unit could share: only their own entry points, as ordinary (T) symbols. It
# matters for those that host/CMakeLists.txt compiles whole with -mavx2 or -mavx512*; the
# others, which use function attributes, hold to it too. A weak or unique symbol there (an inline function or template of a shared header,
# compiled out of line) could be the copy the linker keeps for every caller, and run AVX-512
# instructions on a CPU without them. Usage: check_isa_units.sh LIBWQCUDA_INTERNAL.a
set -euo pipefail
lib=$1
# "archive:member:address type name" for every defined external symbol of the ISA units.
symbols=$(nm -A -g --defined-only "$lib" | grep -E ':[a-z0-9_]+_avx(2|512)\.cpp\.o:' || true)
units=$(nm -A "$lib" 2>/dev/null | grep -oE ':[a-z0-9_]+_avx512\.cpp\.o:' | sort -u | wc -l)
[ "$units" -ge 1 ] || { echo "$lib: no *_avx512.cpp unit found (was it renamed?)"; exit 1; }
shared=$(awk '{ if ($2 != "T") print }' <<<"$symbols")
if [ -n "$shared" ]; then
  echo "ISA-specific units of $lib define symbols other units may share:"
  echo "$shared" | head -20
  exit 1
fi
echo "$lib: the instruction-set units define only their own $(wc -l <<<"$symbols") functions"
