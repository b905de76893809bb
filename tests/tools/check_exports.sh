#!/bin/bash
# libwqcuda exports its public API and nothing of its internals (include/wq/export.h): every
# function that include/wq/ declares with WQ_API is in the dynamic symbol table, and nothing of
# wq::detail, wq::cuda or wq::cli is. Usage: check_exports.sh LIBWQCUDA.so INCLUDE_DIR
set -euo pipefail
lib=$1
include=$2
symbols=$(nm -DC --defined-only "$lib" | cut -d' ' -f3-)
status=0
internal=$(grep -E '(^| )wq::(detail|cuda|cli)::' <<<"$symbols" || true)
if [ -n "$internal" ]; then
  echo "$lib exports internals:"
  echo "$internal" | head -20
  status=1
fi
# Public functions: "WQ_API <type> NAME(" at the start of a line of a public header.
names=$(grep -hoE '^WQ_API [^(]*[ *&]([a-z_0-9]+)\(' "$include"/wq/*.h | sed -E 's/.*[ *&]([a-z_0-9]+)\($/\1/' | sort -u)
[ -n "$names" ] || { echo "no WQ_API functions found under $include/wq"; exit 1; }
for name in $names; do
  if ! grep -qE "^wq::$name(\[abi:cxx11\])?\(" <<<"$symbols"; then
    echo "$lib does not export wq::$name, which include/wq/ declares WQ_API"
    status=1
  fi
done
# Classes with virtual functions or out-of-line members: their typeinfo or members.
for cls in Backend CheckpointReader ContainerReader Error; do
  grep -qF "typeinfo for wq::$cls" <<<"$symbols" || { echo "$lib does not export typeinfo for wq::$cls"; status=1; }
done
[ $status -eq 0 ] && echo "$lib: $(wc -l <<<"$names") public functions exported, no internals"
exit $status
