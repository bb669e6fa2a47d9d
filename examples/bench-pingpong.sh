#!/bin/sh
# The C boundary's cost: 8-byte round trips between two processes, through the C ABI (C and
# C++, static and shared library) against the same byte channel from Rust, and the Rust typed
# SPSC ping-pong, and the typed SPSC ping-pong through the C ABI (c_typed) against it. Interleaved rounds (the order rotates each round), ratios taken
# within a round, medians at the end. One command, from the repository root:
#
#   sh examples/bench-pingpong.sh [ROUNDS [ROUND_TRIPS]]      (default 7 rounds of 100000)
#
# It builds what it runs (release): the C library, the Rust examples, examples/Makefile.
set -eu
ROUNDS=${1:-7}
N=${2:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p shmlane-ffi
cargo build --release -q -p shmlane --example pingpong_bytes --example pingpong
make -s -C examples all >/dev/null
E=target/examples
R=target/release/examples
set -- c_static c_shared cpp rust_bytes rust_spsc c_typed
run() {
  case $1 in
  c_static) $E/c_pingpong "$N" ;;
  c_shared) $E/c_pingpong_shared "$N" ;;
  cpp) $E/cpp_pingpong "$N" ;;
  rust_bytes) $R/pingpong_bytes "$N" ;;
  rust_spsc) $R/pingpong "$N" ;;
  c_typed) $E/c_pingpong_typed "$N" ;;
  esac | sed -n 's/.* p50 \([0-9]*\) ns.*/\1/p'
}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load:$(uptime | sed 's/.*load average//')"
echo "8-byte round trip p50 (ns), $N round trips per run; ratios against rust_bytes (typed: rust_spsc) in the same round"
printf '%-6s %9s %9s %9s %11s %10s %8s %9s %9s %9s %9s\n' round c_static c_shared cpp rust_bytes rust_spsc \
  c_typed c/rust c_so/rust cpp/rust typed/rs
results=$(mktemp)
trap 'rm -f "$results"' EXIT
r=1
while [ "$r" -le "$ROUNDS" ]; do
  # Rotate the order so no variant always runs first or last.
  k=1
  while [ "$k" -lt "$r" ] && [ "$k" -le 5 ]; do
    first=$1
    shift
    set -- "$@" "$first"
    k=$((k + 1))
  done
  for v in "$@"; do
    eval "p_$v=\$(run $v)"
  done
  set -- c_static c_shared cpp rust_bytes rust_spsc c_typed
  # shellcheck disable=SC2154 # set by the eval above
  echo "$r $p_c_static $p_c_shared $p_cpp $p_rust_bytes $p_rust_spsc $p_c_typed" |
    awk '{printf "%-6s %9d %9d %9d %11d %10d %8d %9.3f %9.3f %9.3f %9.3f\n", $1, $2, $3, $4, $5, $6, $7, $2/$5, $3/$5, $4/$5, $7/$6}' |
    tee -a "$results"
  r=$((r + 1))
done
med() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-6s' median
for col in 2 3 4 5 6 7; do printf ' %9s' "$(awk -v c=$col '{print $c}' "$results" | med)"; done
for col in 8 9 10 11; do printf ' %9s' "$(awk -v c=$col '{print $c}' "$results" | med)"; done
echo
