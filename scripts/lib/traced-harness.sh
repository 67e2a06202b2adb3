# Sourced by the scripts that run the throughput harness under `perf`
# (writer-gaps.sh, writer-queue.sh, disk-idle.sh), with their own arguments: SHAPE
# [THROUGHPUT_BIN...]. Sets SHAPE and leaves in "$@" the harness binaries
# to run (a build of this tree when none was given), installs `perf` if it
# is missing, and makes WORK, a scratch directory removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SHAPE=$1
shift
if [ $# -eq 0 ]; then
  cargo build --release --locked -p capline-benches --bin throughput
  set -- "$CARGO_TARGET_DIR/release/throughput"
fi
command -v perf >/dev/null 2>&1 || apt-get install -y -q linux-perf
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$WORK"' EXIT
