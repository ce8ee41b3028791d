#!/usr/bin/env bash
# Tests for the Helm chart in charts/cloudkit.
#
#  1. installs helm with scripts/install-helm.sh (cached, idempotent)
#  2. helm lint
#  3. helm template with default values, watchNamespace=foo, serviceMonitor
#     and extra env, and checks the rendered objects
#  4. if KUBECONFIG is set and the cluster answers /readyz: helm install into
#     a temporary namespace (not waiting for pods: the test cluster may have
#     no nodes), checks the objects exist, then helm uninstall.
#
# Exits non-zero on any failure; the last line is "N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/charts/cloudkit"
PASS=0
FAIL=0
TMP="$(mktemp -d)"

pass() { PASS=$((PASS + 1)); echo "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }

# check DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check() {
  local desc="$1"; shift
  if "$@" >"$TMP/check.out" 2>&1; then
    pass "$desc"
  else
    fail "$desc"
    sed 's/^/       /' "$TMP/check.out" | tail -n 20
  fi
}

# has FILE REGEX / hasnt FILE REGEX
has()   { grep -Eq -- "$2" "$1"; }
hasnt() { ! grep -Eq -- "$2" "$1"; }

# count of objects of a kind in a rendered file
kind_count() { grep -Ec "^kind: $2\$" "$1"; }
has_kind()   { [ "$(kind_count "$1" "$2")" -ge 1 ]; }

# ---------------------------------------------------------------- cleanup
NS=""
RELEASE=""
RELEASE_NS=""
cleanup() {
  if [ -n "$RELEASE" ] && [ -n "$NS" ]; then
    "$HELM" uninstall "$RELEASE" -n "$NS" >/dev/null 2>&1 || true
  fi
  if [ -n "$RELEASE_NS" ] && [ -n "$NS" ]; then
    "$HELM" uninstall "$RELEASE_NS" -n "$NS" >/dev/null 2>&1 || true
  fi
  if [ -n "$NS" ]; then
    kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    finalize_namespace "$NS"
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# A bare kube-apiserver (no kube-controller-manager) never finishes deleting a
# namespace: its "kubernetes" finalizer is removed by the namespace
# controller. If the namespace is still there after a few seconds, clear the
# finalizer through the finalize subresource (helm uninstall has already
# removed the release's objects).
finalize_namespace() {
  local ns="$1" i
  for i in 1 2 3 4 5; do
    kubectl get namespace "$ns" >/dev/null 2>&1 || return 0
    sleep 1
  done
  kubectl get namespace "$ns" -o json 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["finalizers"]=[]; print(json.dumps(d))' \
    | kubectl replace --raw "/api/v1/namespaces/$ns/finalize" -f - >/dev/null 2>&1 || true
}

finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
  exit $?
}

# ---------------------------------------------------------------- helm
if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then
  pass "helm given in \$HELM: $HELM"
elif HELM="$("$ROOT/scripts/install-helm.sh")" && [ -x "$HELM" ]; then
  pass "install helm ($HELM)"
else
  fail "install helm with scripts/install-helm.sh"
  finish
fi
"$HELM" version --short 2>/dev/null | sed 's/^/       helm /'

# ---------------------------------------------------------------- lint
check "helm lint charts/cloudkit" "$HELM" lint "$CHART"
check "helm lint --strict with watchNamespace=foo" "$HELM" lint --strict "$CHART" --set watchNamespace=foo
check "helm lint with serviceMonitor.enabled=true" "$HELM" lint "$CHART" --set serviceMonitor.enabled=true

# ---------------------------------------------------------------- template: defaults
DEF="$TMP/default.yaml"
if "$HELM" template ck "$CHART" --namespace cloudkit-system >"$DEF" 2>"$TMP/err"; then
  pass "helm template (default values)"
else
  fail "helm template (default values)"; sed 's/^/       /' "$TMP/err"
fi
for k in ServiceAccount ClusterRole ClusterRoleBinding Deployment Service; do
  check "default: renders a $k" has_kind "$DEF" "$k"
done
check "default: no Role/RoleBinding"        hasnt "$DEF" '^kind: (Role|RoleBinding)$'
check "default: no ServiceMonitor"          hasnt "$DEF" '^kind: ServiceMonitor$'
check "default: RBAC covers buckets"        has "$DEF" '^ +- buckets$'
check "default: RBAC covers buckets/status" has "$DEF" '^ +- buckets/status$'
check "default: RBAC covers buckets/finalizers" has "$DEF" '^ +- buckets/finalizers$'
for r in providerconfigs tables queues topics functions; do
  check "default: RBAC covers $r, $r/status, $r/finalizers" \
    bash -c "grep -Eq '^ +- $r\$' '$DEF' && grep -Eq '^ +- $r/status\$' '$DEF' && grep -Eq '^ +- $r/finalizers\$' '$DEF'"
done
check "default: RBAC api group cloudkit.dev"   has "$DEF" '^ +- cloudkit\.dev$'
check "default: RBAC secrets"                  has "$DEF" '^ +- secrets$'
check "default: RBAC events.k8s.io"            has "$DEF" '^ +- events\.k8s\.io$'
check "default: RBAC leases"                   has "$DEF" '^ +- leases$'
check "default: args run 'controller'"         has "$DEF" '^ +- controller$'
check "default: --metrics-addr on 8080"        has "$DEF" '--metrics-addr=0\.0\.0\.0:8080'
check "default: --log-format json"             has "$DEF" '--log-format=json'
check "default: --concurrency=128"             has "$DEF" '--concurrency=128'
check "default: no --namespace flag"           hasnt "$DEF" '--namespace='
check "default: RUST_LOG env"                  has "$DEF" 'name: RUST_LOG'
check "default: liveness /healthz"             has "$DEF" 'path: /healthz'
check "default: readiness /readyz"             has "$DEF" 'path: /readyz'
check "default: metrics port named http-metrics" has "$DEF" 'name: http-metrics'
check "default: service port 8080"             has "$DEF" '^ +port: 8080$'
check "default: replicas 1"                    has "$DEF" '^  replicas: 1$'
check "default: runAsNonRoot"                  has "$DEF" 'runAsNonRoot: true'
check "default: readOnlyRootFilesystem"        has "$DEF" 'readOnlyRootFilesystem: true'
check "default: drops ALL capabilities"        has "$DEF" '^ +- ALL$'
check "default: seccomp RuntimeDefault"        has "$DEF" 'type: RuntimeDefault'
check "default: resource requests 50m/64Mi"    bash -c "grep -Eq 'cpu: 50m' '$DEF' && grep -Eq 'memory: 64Mi' '$DEF'"
check "default: memory limit 256Mi"            has "$DEF" 'memory: 256Mi'
check "default: app.kubernetes.io labels"      bash -c "grep -q 'app.kubernetes.io/name: cloudkit' '$DEF' && grep -q 'app.kubernetes.io/instance: ck' '$DEF' && grep -q 'app.kubernetes.io/managed-by: Helm' '$DEF'"
check "default: objects in release namespace"  has "$DEF" 'namespace: cloudkit-system'

if python3 -c 'import yaml' >/dev/null 2>&1; then
  check "default: output is valid YAML with the expected RBAC subjects" python3 - "$DEF" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
sa = by_kind["ServiceAccount"][0]["metadata"]["name"]
crb = by_kind["ClusterRoleBinding"][0]
assert crb["roleRef"]["name"] == by_kind["ClusterRole"][0]["metadata"]["name"], crb
assert crb["subjects"][0]["name"] == sa and crb["subjects"][0]["namespace"] == "cloudkit-system", crb
dep = by_kind["Deployment"][0]
pod = dep["spec"]["template"]["spec"]
assert pod["serviceAccountName"] == sa, pod
sel = dep["spec"]["selector"]["matchLabels"]
assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
svc = by_kind["Service"][0]
assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())
rules = by_kind["ClusterRole"][0]["rules"]
def allowed(group, res, verb):
    return any(group in r["apiGroups"] and res in r["resources"] and verb in r["verbs"] for r in rules)
for res in ["providerconfigs", "buckets", "tables", "queues", "topics", "functions"]:
    for sub in ["", "/status", "/finalizers"]:
        for verb in ["get", "list", "watch", "patch", "update"]:
            assert allowed("cloudkit.dev", res + sub, verb), (res + sub, verb)
for verb in ["get", "create", "patch", "delete"]:
    assert allowed("", "secrets", verb), verb
assert not allowed("", "secrets", "list")
for g in ["events.k8s.io", ""]:
    assert allowed(g, "events", "create") and allowed(g, "events", "patch")
for verb in ["get", "create", "update"]:
    assert allowed("coordination.k8s.io", "leases", verb)
c = pod["containers"][0]
assert c["args"][0] == "controller", c["args"]
sc = c["securityContext"]
assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
assert sc["seccompProfile"]["type"] == "RuntimeDefault"
PY
else
  echo "       (python3 yaml module missing: structural YAML check skipped)"
fi

# ---------------------------------------------------------------- template: watchNamespace
NSF="$TMP/ns.yaml"
if "$HELM" template ck "$CHART" --namespace cloudkit-system --set watchNamespace=foo >"$NSF" 2>"$TMP/err"; then
  pass "helm template --set watchNamespace=foo"
else
  fail "helm template --set watchNamespace=foo"; sed 's/^/       /' "$TMP/err"
fi
for k in ServiceAccount Role RoleBinding Deployment Service; do
  check "watchNamespace: renders a $k" has_kind "$NSF" "$k"
done
check "watchNamespace: no ClusterRole/ClusterRoleBinding" hasnt "$NSF" '^kind: Cluster(Role|RoleBinding)$'
check "watchNamespace: Role in namespace foo"   has "$NSF" '^  namespace: foo$'
check "watchNamespace: --namespace=foo arg"     has "$NSF" '--namespace=foo'
check "watchNamespace: RBAC covers buckets/status"     has "$NSF" '^ +- buckets/status$'
check "watchNamespace: RBAC covers buckets/finalizers" has "$NSF" '^ +- buckets/finalizers$'
check "watchNamespace: leader-election Role in release namespace" \
  bash -c "grep -q 'name: ck-cloudkit-leader-election' '$NSF'"

# ---------------------------------------------------------------- template: options
OPT="$TMP/opt.yaml"
if "$HELM" template ck "$CHART" \
    --set serviceMonitor.enabled=true \
    --set 'extraEnvFrom[0].secretRef.name=cloudkit-aws-credentials' \
    --set 'extraEnv[0].name=AWS_REGION' --set 'extraEnv[0].value=eu-west-1' \
    --set image.repository=example/cloudkit --set image.tag=1.2.3 \
    --set controller.logFormat=pretty --set controller.logLevel=debug \
    --set replicaCount=2 >"$OPT" 2>"$TMP/err"; then
  pass "helm template with options"
else
  fail "helm template with options"; sed 's/^/       /' "$TMP/err"
fi
check "options: ServiceMonitor rendered"   has_kind "$OPT" ServiceMonitor
check "options: envFrom secretRef"         bash -c "grep -q 'envFrom:' '$OPT' && grep -q 'name: cloudkit-aws-credentials' '$OPT'"
check "options: extra env AWS_REGION"      has "$OPT" 'name: AWS_REGION'
check "options: image repository:tag"      has "$OPT" 'image: "example/cloudkit:1\.2\.3"'
check "options: --log-format=pretty"       has "$OPT" '--log-format=pretty'
check "options: RUST_LOG=debug"            has "$OPT" 'value: "debug"'
check "options: replicas 2"                has "$OPT" '^  replicas: 2$'

check "rbac.create=false renders no RBAC" bash -c \
  "'$HELM' template ck '$CHART' --set rbac.create=false | grep -Eq '^kind: (Cluster)?Role' && exit 1 || exit 0"

# ---------------------------------------------------------------- cluster install
cluster_ok=0
if [ -n "${KUBECONFIG:-}" ]; then
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "       KUBECONFIG is set but kubectl is missing: install test skipped"
  elif kubectl get --raw /readyz --request-timeout=10s >/dev/null 2>&1; then
    cluster_ok=1
  else
    echo "       KUBECONFIG is set but the cluster does not answer /readyz: install test skipped"
  fi
else
  echo "       KUBECONFIG not set: install test skipped"
fi

if [ "$cluster_ok" = 1 ]; then
  K="kubectl --request-timeout=30s"
  NS="ck-chart-test-$$-$RANDOM"
  RELEASE="ckt$$"
  FULL="$RELEASE-cloudkit"
  check "create namespace $NS" $K create namespace "$NS"
  # No --wait: the test cluster may have no nodes, so pods never run.
  if "$HELM" install "$RELEASE" "$CHART" -n "$NS" --timeout 2m >"$TMP/install.out" 2>&1; then
    pass "helm install $RELEASE into $NS"
  else
    fail "helm install $RELEASE into $NS"; sed 's/^/       /' "$TMP/install.out" | tail -n 20
  fi
  check "installed: Deployment $FULL"         $K -n "$NS" get deployment "$FULL"
  check "installed: ServiceAccount $FULL"     $K -n "$NS" get serviceaccount "$FULL"
  check "installed: Service $FULL-metrics"    $K -n "$NS" get service "$FULL-metrics"
  check "installed: ClusterRole $FULL"        $K get clusterrole "$FULL"
  check "installed: ClusterRoleBinding $FULL" $K get clusterrolebinding "$FULL"
  check "helm status deployed" bash -c "'$HELM' status '$RELEASE' -n '$NS' | grep -q 'STATUS: deployed'"
  if [ -f "$CHART/crds/crds.yaml" ]; then
    check "installed: CRD buckets.cloudkit.dev" $K get crd buckets.cloudkit.dev
  fi
  # RBAC as the controller's ServiceAccount, asked with a raw
  # SubjectAccessReview (works before the CRDs exist, unlike `auth can-i`).
  SA="system:serviceaccount:$NS:$FULL"
  # sar VERB GROUP RESOURCE SUBRESOURCE -> prints true/false
  sar() {
    $K create -o jsonpath='{.status.allowed}' -f - <<JSON
{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
 "spec":{"user":"$SA","groups":["system:serviceaccounts","system:serviceaccounts:$NS","system:authenticated"],
  "resourceAttributes":{"namespace":"$NS","verb":"$1","group":"$2","resource":"$3","subresource":"$4"}}}
JSON
  }
  allowed() { [ "$(sar "$@")" = "true" ]; }
  denied()  { [ "$(sar "$@")" != "true" ]; }
  for sub in "" status finalizers; do
    for verb in get list watch patch update; do
      check "SA may $verb buckets${sub:+/$sub}" allowed "$verb" cloudkit.dev buckets "$sub"
    done
  done
  check "SA may get secrets"             allowed get "" secrets ""
  check "SA may patch secrets (connection Secrets)" allowed patch "" secrets ""
  check "SA may create events.k8s.io events" allowed create events.k8s.io events ""
  check "SA may update leases"           allowed update coordination.k8s.io leases ""
  if allowed delete "" nodes ""; then
    echo "       apiserver allows everything (no RBAC authorizer?): negative RBAC checks skipped"
  else
    check "SA may not list secrets"      denied list "" secrets ""
    check "SA may not delete buckets"    denied delete cloudkit.dev buckets ""
  fi

  # Namespace-scoped mode in the same namespace.
  RELEASE_NS="cktn$$"
  FULLN="$RELEASE_NS-cloudkit"
  if "$HELM" install "$RELEASE_NS" "$CHART" -n "$NS" --set watchNamespace="$NS" --skip-crds --timeout 2m >"$TMP/install2.out" 2>&1; then
    pass "helm install $RELEASE_NS with watchNamespace=$NS"
  else
    fail "helm install $RELEASE_NS with watchNamespace=$NS"; sed 's/^/       /' "$TMP/install2.out" | tail -n 20
  fi
  check "installed (ns mode): Role $FULLN"        $K -n "$NS" get role "$FULLN"
  check "installed (ns mode): RoleBinding $FULLN" $K -n "$NS" get rolebinding "$FULLN"
  check "installed (ns mode): no ClusterRole $FULLN" bash -c "! $K get clusterrole '$FULLN' >/dev/null 2>&1"

  check "helm uninstall $RELEASE_NS" "$HELM" uninstall "$RELEASE_NS" -n "$NS" --timeout 2m
  RELEASE_NS=""
  check "helm uninstall $RELEASE" "$HELM" uninstall "$RELEASE" -n "$NS" --timeout 2m
  RELEASE=""
  check "uninstalled: ClusterRole $FULL gone" bash -c "! $K get clusterrole '$FULL' >/dev/null 2>&1"
  check "uninstalled: Deployment $FULL gone" bash -c "! $K -n '$NS' get deployment '$FULL' >/dev/null 2>&1"
fi

finish
