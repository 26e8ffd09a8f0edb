#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after the
# other, and fails on the first crash. A crash input is left in
# fuzz/artifacts/TARGET/; check it in under fuzz/regressions/TARGET/ and
# `cargo test` replays it (tests/it/fuzz_regressions.rs reads that directory).
#
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain. cargo-fuzz is installed from crates.io if it is missing.
set -euo pipefail
SECONDS_EACH="${1:-60}"
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Stores are created per input: keep them in memory where the machine allows.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

export RUSTC_BOOTSTRAP=1
for target in ops decode inputs control; do
  mkdir -p "corpus/$target"
  # Seed the corpus with the checked-in inputs of this target.
  if [ -d "regressions/$target" ]; then
    cp -n regressions/"$target"/* "corpus/$target/" 2>/dev/null || true
  fi
  echo "== fuzz $target for ${SECONDS_EACH}s"
  cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -print_final_stats=1 \
    -detect_leaks=0
done
echo "== fuzz passed"
