#!/usr/bin/env bash
# Side-by-side: a C++ server loop writing SageMaker capture lines through
# spdlog's async logger vs capline_capture, in the same run.
# Usage: scripts/bench-spdlog.sh [REPS]   (installs libspdlog-dev if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
PREFIX="$CARGO_TARGET_DIR/c-prefix"
if ! dpkg -s libspdlog-dev >/dev/null 2>&1; then apt-get install -y -q libspdlog-dev; fi
scripts/c-install.sh "$PREFIX" >/dev/null
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$WORK"' EXIT
c++ -std=c++17 -O2 -Wall -Werror benches/c/spdlog_vs_capline.cpp -o "$WORK/bench" \
  $(pkg-config --cflags --libs capline spdlog) -Wl,-rpath,"$PREFIX/lib" -lpthread
echo "spdlog $(dpkg-query -W -f '${Version}' libspdlog-dev), capline $(pkg-config --modversion capline)"
"$WORK/bench" "$WORK" "${1:-3}"
