#!/usr/bin/env bash
# The main job on a fresh machine: start the local cluster and the AWS, Azure and GCP
# emulators, install the CRDs, run the controller, apply samples/ (AWS), samples/azure/ and
# samples/gcp/ and wait until every resource is Ready.
#   scripts/demo.sh        start (idempotent) and show the resources
#   scripts/demo.sh down   stop the controller and the environment
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cloudkit/target}
STATE=${CLOUDKIT_STATE:-${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}/run}
PIDFILE=$STATE/controller.pid
LOG=$STATE/log/controller.log

stop_controller() {
    if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        kill "$(cat "$PIDFILE")"
    fi
    rm -f "$PIDFILE"
}

if [[ ${1:-} == down ]]; then
    stop_controller
    exec "$ROOT/scripts/dev-env.sh" down
fi

"$ROOT/scripts/dev-env.sh" up
# shellcheck source=/dev/null
source "$("$ROOT/scripts/dev-env.sh" env)"

echo "demo: building the controller" >&2
cargo build -p cloudkit
BIN=$CARGO_TARGET_DIR/debug/cloudkit

echo "demo: installing the CRDs" >&2
"$BIN" crds | kubectl apply --server-side --force-conflicts -f - 2> >(grep -v '^Warning' >&2)
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null 2>&1

stop_controller
mkdir -p "$(dirname "$LOG")"
# Only `default`, where samples/ live, so the e2e tests' own controllers are not raced.
nohup "$BIN" controller --namespace default --metrics-addr 127.0.0.1:8080 >"$LOG" 2>&1 &
echo $! >"$PIDFILE"
echo "demo: controller running (pid $(cat "$PIDFILE"), log $LOG, metrics http://127.0.0.1:8080/metrics)" >&2

# The sample Function runs as an IAM role; on the local emulator the demo creates it (moto
# accepts any signature). On real AWS, create a role and set its ARN in samples/stack.yaml.
curl -fsS -o /dev/null -X POST "$CLOUDKIT_AWS_ENDPOINT/" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0' \
    --data-urlencode Action=CreateRole --data-urlencode Version=2010-05-08 \
    --data-urlencode RoleName=cloudkit-sample-lambda \
    --data-urlencode 'AssumeRolePolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}' \
    2>/dev/null || true # already there

kubectl apply -f samples/ 2> >(grep -v '^Warning' >&2)
# The same kinds on Azure Storage (Azurite, started by dev-env.sh).
kubectl apply -f samples/azure/ 2> >(grep -v '^Warning' >&2)
# And on Google Cloud (gcp-storage-emulator and the Pub/Sub emulator, started by dev-env.sh).
kubectl apply -f samples/gcp/ 2> >(grep -v '^Warning' >&2)
if ! kubectl wait --for=condition=Ready buckets,queues,topics,tables,functions --all -n default --timeout=120s 2> >(grep -v '^Warning' >&2); then
    echo "demo: resources did not become Ready; controller log:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
fi
kubectl get providerconfigs,buckets,queues,topics,tables,functions -n default 2> >(grep -v '^Warning' >&2)
echo
echo "demo: done. KUBECONFIG=$KUBECONFIG; stop with: scripts/demo.sh down" >&2
