#!/usr/bin/env bash
# Builds the C ABI (bindings/c) in release mode and installs it under PREFIX:
#   PREFIX/include/capline.h, capline.hpp
#   PREFIX/lib/libcapline.so.X.Y.Z (soname libcapline.so.X.Y), libcapline.so, libcapline.a
#   PREFIX/lib/pkgconfig/capline.pc
# Usage: scripts/c-install.sh PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:?usage: scripts/c-install.sh PREFIX}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | awk 'NR == 1')
MAJOR_MINOR=${VERSION%.*}

cargo build --release --locked -p capline-c
# What a static link needs besides libcapline.a (rustc's own list).
NATIVE=$(cargo rustc --release --locked -p capline-c --crate-type staticlib -- --print native-static-libs 2>&1 |
  sed -n 's/.*native-static-libs: //p' | tail -1)

mkdir -p "$PREFIX/include" "$PREFIX/lib/pkgconfig"
install -m 644 bindings/c/include/capline.h bindings/c/include/capline.hpp "$PREFIX/include/"
install -m 755 "$CARGO_TARGET_DIR/release/libcapline.so" "$PREFIX/lib/libcapline.so.$VERSION"
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
echo "installed capline $VERSION (soname libcapline.so.$MAJOR_MINOR) into $PREFIX"
