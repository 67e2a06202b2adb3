#!/usr/bin/env bash
# Builds the C ABI (bindings/c) in release mode and installs it under PREFIX:
#   PREFIX/include/capline.h, capline.hpp
#   PREFIX/lib/libcapline.so.X.Y.Z (soname libcapline.so.X.Y; stripped), libcapline.so, libcapline.a
#   PREFIX/lib/debug/libcapline.so.X.Y.Z.debug (its debug info, linked by .gnu_debuglink)
#   PREFIX/lib/pkgconfig/capline.pc
# With --no-s3, the library is built without S3 delivery (local destinations
# only; no AWS SDK inside).
# Usage: scripts/c-install.sh PREFIX [--no-s3]
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:?usage: scripts/c-install.sh PREFIX [--no-s3]}
FEATURES=()
if [ "${2:-}" = "--no-s3" ]; then FEATURES=(--no-default-features); fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | awk 'NR == 1')
MAJOR_MINOR=${VERSION%.*}

cargo build --release --locked -p capline-c "${FEATURES[@]}"
# What a static link needs besides libcapline.a (rustc's own list).
NATIVE=$(cargo rustc --release --locked -p capline-c "${FEATURES[@]}" --crate-type staticlib -- --print native-static-libs 2>&1 |
  sed -n 's/.*native-static-libs: //p' | tail -1)

mkdir -p "$PREFIX/include" "$PREFIX/lib/pkgconfig" "$PREFIX/lib/debug"
install -m 644 bindings/c/include/capline.h bindings/c/include/capline.hpp "$PREFIX/include/"
# Shipped stripped; its debug info goes beside it, found by .gnu_debuglink.
SO="$PREFIX/lib/libcapline.so.$VERSION"
install -m 755 "$CARGO_TARGET_DIR/release/libcapline.so" "$SO"
objcopy --only-keep-debug "$SO" "$PREFIX/lib/debug/libcapline.so.$VERSION.debug"
strip --strip-unneeded "$SO"
objcopy --add-gnu-debuglink="$PREFIX/lib/debug/libcapline.so.$VERSION.debug" "$SO"
ln -sf "libcapline.so.$VERSION" "$PREFIX/lib/libcapline.so.$MAJOR_MINOR"
ln -sf "libcapline.so.$MAJOR_MINOR" "$PREFIX/lib/libcapline.so"
install -m 644 "$CARGO_TARGET_DIR/release/libcapline.a" "$PREFIX/lib/libcapline.a"
cat >"$PREFIX/lib/pkgconfig/capline.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: capline
Description: SageMaker-compatible data capture for inference servers (C ABI)
Version: $VERSION
Libs: -L\${libdir} -lcapline
Libs.private: $NATIVE
Cflags: -I\${includedir}
PC
echo "installed capline $VERSION (soname libcapline.so.$MAJOR_MINOR${FEATURES:+, without S3}) into $PREFIX:" \
  "libcapline.so $(stat -c %s "$SO") bytes stripped," \
  "debug info $(stat -c %s "$PREFIX/lib/debug/libcapline.so.$VERSION.debug") bytes apart," \
  "libcapline.a $(stat -c %s "$PREFIX/lib/libcapline.a") bytes"
