#!/usr/bin/env bash
# Benchmarks that print figures (not timed tests): cloud calls per kind to Ready and per
# quiet resync, how soon dependents go on once their dependency is Ready, and the graph of
# references at 10,000 objects. Runs against the same environment as scripts/test.sh and
# writes docs/bench/latest.md.
#   scripts/bench.sh            (CLOUDKIT_BENCH_DEPENDENTS=100 by default)
#
# The scale benchmark (issue 14): N Buckets per size against the same environment, with a
# release build of the controller; appends a section to docs/bench/scale.md.
#   scripts/bench.sh scale [N...]     (default: 100 1000; e.g. `scale 10000` takes ~15 min)
#   CLOUDKIT_BENCH_LABEL="after X"   names the section; CLOUDKIT_BENCH_ARGS passes
#                                    --idle/--resync/--probes to cloudkit-bench
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cloudkit/target}
export CLOUDKIT_BENCH_DEPENDENTS=${CLOUDKIT_BENCH_DEPENDENTS:-100}

"$ROOT/scripts/dev-env.sh" up
# shellcheck source=/dev/null
source "$("$ROOT/scripts/dev-env.sh" env)"

if [[ ${1:-} == scale ]]; then
    shift
    (($#)) || set -- 100 1000
    # Apart: built together, the two would unify features and rebuild every dependency.
    cargo build -q --release -p cloudkit
    cargo build -q --release -p cloudkit-e2e --bin cloudkit-bench
    export CLOUDKIT_BIN=$CARGO_TARGET_DIR/release/cloudkit
    "$CLOUDKIT_BIN" crds | kubectl apply --server-side --force-conflicts -f - >/dev/null 2> >(grep -v '^Warning' >&2)
    # shellcheck disable=SC2086
    exec "$CARGO_TARGET_DIR/release/cloudkit-bench" --out docs/bench/scale.md \
        --label "${CLOUDKIT_BENCH_LABEL:-$(git rev-parse --short HEAD)}" ${CLOUDKIT_BENCH_ARGS:-} "$@"
fi
cargo build -p cloudkit
export CLOUDKIT_BIN=$CARGO_TARGET_DIR/debug/cloudkit
"$CLOUDKIT_BIN" crds | kubectl apply --server-side --force-conflicts -f - >/dev/null 2> >(grep -v '^Warning' >&2)

out=$(mktemp)
cargo test -q -p cloudkit-e2e --test cloud_calls --test unblock_latency -- --nocapture --test-threads 1 | tee "$out"
# In memory, no cluster: a release build, for figures a deployed controller would see.
cargo test -q --release -p cloudkit --bin cloudkit -- --ignored --nocapture --exact dag::bench::graph_of_10k_objects |
    tee -a "$out"
mkdir -p docs/bench
{
    echo "# Benchmark figures"
    echo
    echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;"
    server=$(kubectl get --raw /version | python3 -c 'import json, sys; print(json.load(sys.stdin)["gitVersion"])' || echo unknown)
    echo "real kube-apiserver $server, moto, debug build of the controller, $CLOUDKIT_BENCH_DEPENDENTS dependents."
    echo
    grep -E '^\|' "$out" || true
    echo
    grep -E '^unblock latency' "$out" | sed 's/^/- /' || true
    echo
    echo "The controller's graph of references (\`controller/src/dag/bench.rs\`, in memory):"
    echo
    grep -E '^graph bench: ' "$out" | sed 's/^graph bench: /- /' || true
} >docs/bench/latest.md
rm -f "$out"
echo "bench: wrote docs/bench/latest.md" >&2
