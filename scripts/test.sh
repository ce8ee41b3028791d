#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, then the end-to-end tests (real kube-apiserver,
# moto and the cloudkit binary) and the Helm chart tests.
#
# Uses the cluster in KUBECONFIG when it answers and CLOUDKIT_AWS_ENDPOINT, the Azure
# endpoints (CLOUDKIT_AZURE_*) and the GCP ones (CLOUDKIT_GCP_*) are set;
# otherwise starts the local environment with scripts/dev-env.sh (first run on a fresh
# machine builds kube-apiserver, ~6 min). Build output is cached outside the clone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cloudkit/target}

step() { printf '\n== %s\n' "$*" >&2; }

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Each cloud is a Cargo feature: the crate must build with none of them.
cargo check -p cloudkit-reconcilers --no-default-features
cargo check -p cloudkit-reconcilers --no-default-features --features aws
cargo check -p cloudkit-reconcilers --no-default-features --features gcp
# An AWS-only build compiles no Azure or GCP crate.
if cargo tree -p cloudkit-reconcilers --no-default-features --features aws -e normal --prefix none \
    | grep -qE '^(azure_|typespec|google-|googleapis)'; then
    echo "an AWS-only build pulls in Azure or GCP crates" >&2
    exit 1
fi

step "unit tests"
cargo test --workspace --exclude cloudkit-e2e

step "environment"
user_kubeconfig=""
if [[ -n ${KUBECONFIG:-} ]] && kubectl get --raw /readyz >/dev/null 2>&1; then
    user_kubeconfig=$KUBECONFIG
fi
if [[ -z $user_kubeconfig || -z ${CLOUDKIT_AWS_ENDPOINT:-} || -z ${CLOUDKIT_AZURE_BLOB_ENDPOINT:-} \
    || -z ${CLOUDKIT_GCP_STORAGE_ENDPOINT:-} ]]; then
    "$ROOT/scripts/dev-env.sh" up
    # shellcheck source=/dev/null
    source "$("$ROOT/scripts/dev-env.sh" env)"
fi
[[ -z $user_kubeconfig ]] || export KUBECONFIG=$user_kubeconfig
echo "cluster: $KUBECONFIG; S3: $CLOUDKIT_AWS_ENDPOINT; Azure blob: $CLOUDKIT_AZURE_BLOB_ENDPOINT; GCS: $CLOUDKIT_GCP_STORAGE_ENDPOINT" >&2
# The gcp_* e2e tests for Pub/Sub and Bigtable skip (loudly) without their emulators.
[[ -n ${CLOUDKIT_GCP_PUBSUB_ENDPOINT:-} ]] || echo "WARNING: no Pub/Sub emulator: GCP Topic/Queue e2e tests will SKIP" >&2
[[ -n ${CLOUDKIT_GCP_BIGTABLE_ENDPOINT:-} ]] || echo "WARNING: no Bigtable emulator: GCP Table e2e tests will SKIP" >&2

step "build the controller and install the CRDs"
cargo build -p cloudkit
export CLOUDKIT_BIN=$CARGO_TARGET_DIR/debug/cloudkit
"$CLOUDKIT_BIN" crds | kubectl apply --server-side --force-conflicts -f - 2> >(grep -v '^Warning' >&2)

step "end-to-end tests"
# Argo CD's health check is a Lua script; the tests run it with Debian's Lua 5.4.
if ! command -v lua5.4 >/dev/null; then
    apt-get install -y -q lua5.4 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q lua5.4 >/dev/null; }
fi
# kpt (the kstatus library Flux uses, as a command) comes with the Google Cloud CLI packages.
if ! command -v kpt >/dev/null; then
    apt-get install -y -q google-cloud-cli-kpt >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q google-cloud-cli-kpt >/dev/null; }
fi
cargo test -p cloudkit-e2e

step "Helm chart"
bash "$ROOT/tests/chart/test.sh"
