#!/usr/bin/env bash
# The C ABI's tests: C and C++ programs compiled with the system's cc/c++
# against the installed header and both libraries.
# Usage: scripts/c-tests.sh [PER_THREAD]   (default 100000 captures per thread)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
PER_THREAD=${1:-100000}
PREFIX="$CARGO_TARGET_DIR/c-prefix"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CAPLINE="$CARGO_TARGET_DIR/debug/capline"

echo "--- header is up to date (cbindgen)"
if ! command -v cbindgen >/dev/null 2>&1; then
  cargo install cbindgen --version 0.29.4 --locked
fi
(cd bindings/c && cbindgen --config cbindgen.toml --crate capline-c --output "$WORK/capline.h" 2>/dev/null)
if ! diff -u bindings/c/include/capline.h "$WORK/capline.h"; then
  echo "bindings/c/include/capline.h is stale: run (cd bindings/c && cbindgen --config cbindgen.toml --crate capline-c --output include/capline.h)"
  exit 1
fi

# The shared library exports the C API and nothing else (no dependency's
# symbols), and carries no debug info of its own.
check_exports() { # LIB
  local exports others
  exports=$(nm -D --defined-only --format=posix "$1" | awk '{print $1}')
  others=$(printf '%s\n' "$exports" | grep -v '^capline_' || true)
  [ -z "$others" ] || { echo "$1 exports more than capline_*:"; printf '%s\n' "$others" | head -20; exit 1; }
  if readelf -S "$1" | grep -q '\.debug_info'; then echo "$1 is not stripped"; exit 1; fi
  echo "$1: exports $(printf '%s\n' "$exports" | wc -l) symbols, all capline_*; stripped"
}

echo "--- install without S3 (local destinations only)"
rm -rf "$PREFIX"
scripts/c-install.sh "$PREFIX" --no-s3
check_exports "$PREFIX/lib/libcapline.so"

echo "--- install"
rm -rf "$PREFIX"
scripts/c-install.sh "$PREFIX"
check_exports "$PREFIX/lib/libcapline.so"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
CFLAGS="-std=c11 -Wall -Wextra -Werror -O2 $(pkg-config --cflags capline)"
SHARED="$(pkg-config --libs capline) -Wl,-rpath,$PREFIX/lib -lpthread -lm"
STATIC="$PREFIX/lib/libcapline.a $(pkg-config --static --libs-only-l capline | sed 's/-lcapline//') -lpthread -lm"

# Checks a capture directory: valid lines (capline cat --validate) and the record count.
check_files() { # DEST EXPECTED_RECORDS
  "$CAPLINE" cat --validate "$1" >/dev/null
  local n
  n=$(find "$1" -name '*.jsonl' -not -path "$1/.*" -not -path "$1/*/.*" -exec cat {} + | wc -l)
  [ "$n" -eq "$2" ] || { echo "$1: $n records on disk, expected $2"; exit 1; }
  echo "$1: $n records, all valid"
}

run_threads() { # LABEL BINARY [RUNNER...]
  local label=$1 bin=$2
  shift 2
  local d="$WORK/$label"
  mkdir -p "$d"
  local out
  out=$("$@" "$bin" "$d/spool" "$d/capture" 8 "$PER_THREAD")
  echo "threads ($label): $out"
  check_files "$d/capture" "$(echo "$out" | sed -n 's/.* written \([0-9]*\) .*/\1/p')"
}

echo "--- 8 pthreads x $PER_THREAD captures, shared and static library"
cc $CFLAGS bindings/c/tests/threads.c -o "$WORK/threads-shared" $SHARED
cc $CFLAGS bindings/c/tests/threads.c -o "$WORK/threads-static" $STATIC
# ldd's output is captured first: `ldd | grep -q` under pipefail fails when grep
# exits before ldd has finished writing (SIGPIPE), which made this check flaky.
deps_shared=$(ldd "$WORK/threads-shared")
deps_static=$(ldd "$WORK/threads-static")
[[ $deps_shared == *libcapline.so.0* ]] || { echo "not linked to the shared library:"; echo "$deps_shared"; exit 1; }
if [[ $deps_static == *libcapline* ]]; then echo "static binary loads libcapline.so"; exit 1; fi
run_threads shared "$WORK/threads-shared"
run_threads static "$WORK/threads-static"

echo "--- the same under AddressSanitizer + UndefinedBehaviorSanitizer"
cc $CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
  bindings/c/tests/threads.c -o "$WORK/threads-asan" $SHARED
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run_threads asan "$WORK/threads-asan"

echo "--- the same under valgrind (memcheck, leak check), 8 threads x $((PER_THREAD / 20))"
PER_THREAD_SAVED=$PER_THREAD
PER_THREAD=$((PER_THREAD / 20))
run_threads valgrind "$WORK/threads-shared" valgrind -q --leak-check=full --error-exitcode=1 \
  --errors-for-leak-kinds=definite,indirect --show-possibly-lost=no
PER_THREAD=$PER_THREAD_SAVED

echo "--- bad arguments: documented codes, explained, no crash (plain, ASan+UBSan, valgrind)"
cc $CFLAGS bindings/c/tests/bad_args.c -o "$WORK/bad_args" $SHARED
cc $CFLAGS -fsanitize=address,undefined -fno-sanitize-recover=all bindings/c/tests/bad_args.c \
  -o "$WORK/bad_args-asan" $SHARED
mkdir -p "$WORK/bad"
"$WORK/bad_args" "$WORK/bad/spool" "$WORK/bad/capture" | tail -1
check_files "$WORK/bad/capture" 151
ASAN_OPTIONS=detect_leaks=1 "$WORK/bad_args-asan" "$WORK/bad/spool2" "$WORK/bad/capture2" | tail -1
valgrind -q --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite,indirect --show-possibly-lost=no \
  "$WORK/bad_args" "$WORK/bad/spool3" "$WORK/bad/capture3" | tail -1

echo "--- C++ wrapper: -Wall -Wextra -Werror, C++17 and C++20"
for std in c++17 c++20; do
  c++ -std=$std -Wall -Wextra -Werror -O2 $(pkg-config --cflags capline) bindings/c/tests/wrapper.cpp \
    -o "$WORK/wrapper-$std" $SHARED
  mkdir -p "$WORK/cpp-$std"
  out=$("$WORK/wrapper-$std" "$WORK/cpp-$std/spool" "$WORK/cpp-$std/capture")
  echo "$std: $out"
  check_files "$WORK/cpp-$std/capture" "$(echo "$out" | sed -n 's/wrapper ok: \([0-9]*\) records.*/\1/p')"
done

echo "--- the example, built with its documented command"
(cd bindings/c/examples && cc capture_csv.c $(pkg-config --cflags --libs capline) -Wl,-rpath,"$PREFIX/lib" \
  -o "$WORK/capture_csv")
"$WORK/capture_csv" "$WORK/example/spool" "$WORK/example/capture"
check_files "$WORK/example/capture" 3

echo "c-tests: all passed"
