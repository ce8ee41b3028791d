#!/usr/bin/env bash
# Local dev/test environment for CloudKit: a real kube-apiserver + etcd, a
# moto server (AWS emulator), Azurite (Azure Storage emulator) and the GCP
# emulators (GCS from PyPI, Pub/Sub and Bigtable from the Google Cloud SDK), all
# on loopback. See --help.
#
# Everything is installed by this script (a fresh machine has none of it) and
# cached outside the clone, so it works from any checkout and any cwd.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<'EOF'
Usage: scripts/dev-env.sh COMMAND

Commands:
  up            install what is missing (first run builds kube-apiserver, ~6 min),
                start etcd, kube-apiserver, moto, Azurite and the GCP emulators;
                no-op for healthy components
  down [--purge] stop everything and drop the cluster's data (the next `up`
                starts a clean cluster); --purge also removes the state dir
                (keys, token, kubeconfig, logs)
  status        print each component's state; exit 1 if any is not healthy
  env           print the path of the sourceable env file
                (usage: source "$(scripts/dev-env.sh env)")

Environment:
  CLOUDKIT_CACHE           installs and builds   (default ~/.cache/cloudkit)
  CLOUDKIT_STATE           pids, logs, data, env (default $CLOUDKIT_CACHE/run)
  CLOUDKIT_APISERVER_PORT  kube-apiserver https port (default 6443)
  CLOUDKIT_ETCD_PORT       etcd client port (default 12379; peer port is +1)
  CLOUDKIT_MOTO_PORT       moto http port (default 5000)
  CLOUDKIT_AZURITE_PORT    Azurite blob port (default 10000; queue +1, table +2; the
                           HTTPS + Entra ID instance +3, +4, +5)
  CLOUDKIT_GCS_PORT        gcp-storage-emulator http port (default 4443)
  CLOUDKIT_PUBSUB_PORT     Pub/Sub emulator port (default 8085)
  CLOUDKIT_BIGTABLE_PORT   Bigtable emulator port (default 8086)

The Pub/Sub and Bigtable emulators come with the Google Cloud SDK under
/usr/lib/google-cloud-sdk/platform/; when they are not there, `up` says so
loudly and starts the rest (the tests needing them then skip, loudly too).
Each state dir is its own environment: two can run side by side with
different ports and CLOUDKIT_STATE.
EOF
}

CACHE=${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}
STATE=${CLOUDKIT_STATE:-$CACHE/run}
API_PORT=${CLOUDKIT_APISERVER_PORT:-6443}
# Not 2379: installing Debian's etcd-server starts a system etcd there on
# machines that run systemd.
ETCD_PORT=${CLOUDKIT_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
MOTO_PORT=${CLOUDKIT_MOTO_PORT:-5000}
AZURITE_BLOB_PORT=${CLOUDKIT_AZURITE_PORT:-10000}
AZURITE_QUEUE_PORT=$((AZURITE_BLOB_PORT + 1))
AZURITE_TABLE_PORT=$((AZURITE_BLOB_PORT + 2))
# A second Azurite, over HTTPS and accepting Entra ID bearer tokens (`--oauth basic`, which
# Azurite allows only with TLS): blob, queue and table on the next three ports.
AZURITE_ENTRA_BLOB_PORT=$((AZURITE_BLOB_PORT + 3))
AZURITE_ENTRA_QUEUE_PORT=$((AZURITE_BLOB_PORT + 4))
AZURITE_ENTRA_TABLE_PORT=$((AZURITE_BLOB_PORT + 5))
# Azurite's documented development account: public, the same on every machine.
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
GCS_PORT=${CLOUDKIT_GCS_PORT:-4443}
PUBSUB_PORT=${CLOUDKIT_PUBSUB_PORT:-8085}
BIGTABLE_PORT=${CLOUDKIT_BIGTABLE_PORT:-8086}
# Any project name works on the emulators; the tests create everything in it.
GCP_PROJECT=cloudkit-dev
GCLOUD_PLATFORM=${CLOUDKIT_GCLOUD_PLATFORM:-/usr/lib/google-cloud-sdk/platform}
PUBSUB_BIN=$GCLOUD_PLATFORM/pubsub-emulator/bin/cloud-pubsub-emulator
BIGTABLE_BIN=$GCLOUD_PLATFORM/bigtable-emulator/cbtemulator
# The Pub/Sub launcher execs java: its command line names the jar, not the launcher.
PUBSUB_MARKER=$GCLOUD_PLATFORM/pubsub-emulator/lib/cloud-pubsub-emulator

APISERVER_BIN=$CACHE/bin/kube-apiserver
K8S_VERSION=v1.20.2 # what bookworm's kubernetes source package builds
PKI=$STATE/pki
KUBECONFIG_FILE=$STATE/kubeconfig
ENV_FILE=$STATE/env
ETCD_DATA=$STATE/etcd-data

log() { echo "dev-env: $*" >&2; }
die() { echo "dev-env: error: $*" >&2; exit 1; }

# --- packages ---------------------------------------------------------------

APT_UPDATED=
apt_update_once() {
    [[ -n $APT_UPDATED ]] && return
    log "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
}

# Installs the given Debian packages that are not installed yet.
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    apt_update_once
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

ensure_runtime_packages() {
    apt_ensure etcd-server openssl curl
    # Any recent kubectl works; Debian's own only when none is there.
    command -v kubectl >/dev/null || apt_ensure kubernetes-client
}

# apt-get source needs deb-src entries; derive them from the machine's own
# sources so no mirror is hard-coded here.
ensure_deb_src() {
    local d=/etc/apt/sources.list.d
    if [[ -f $d/debian.sources ]]; then
        grep -q '^Types:.*deb-src' "$d"/*.sources 2>/dev/null && return
        sed 's/^Types: deb$/Types: deb-src/' "$d/debian.sources" >"$d/cloudkit-src.sources"
    elif [[ -f /etc/apt/sources.list ]]; then
        grep -qs '^deb-src ' /etc/apt/sources.list "$d"/*.list && return
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$d/cloudkit-src.list"
    else
        die "no apt sources found to derive deb-src entries from"
    fi
    APT_UPDATED= # new sources: the lists must be fetched again
    apt_update_once
}

# --- kube-apiserver build ---------------------------------------------------

apiserver_ok() { [[ -x $1 ]] && "$1" --version 2>/dev/null | grep -q "Kubernetes $K8S_VERSION"; }

install_apiserver_bin() {
    mkdir -p "$CACHE/bin"
    cp "$1" "$APISERVER_BIN.tmp" && mv "$APISERVER_BIN.tmp" "$APISERVER_BIN"
}

# No upstream binaries can be downloaded here, so kube-apiserver is built from
# Debian's kubernetes source package (bookworm ships no apiserver binary).
ensure_apiserver() {
    apiserver_ok "$APISERVER_BIN" && return
    local src=$CACHE/src
    local tree=$src/k8s
    if apiserver_ok "$tree/_output/bin/kube-apiserver"; then
        install_apiserver_bin "$tree/_output/bin/kube-apiserver"
        return
    fi

    log "building kube-apiserver $K8S_VERSION from Debian source (takes ~6 min)"
    # golang-github-modern-go-reflect2-dev: the vendored reflect2 crashes
    # under Go >= 1.18; Debian's newer copy replaces it.
    apt_ensure golang-go rsync golang-github-modern-go-reflect2-dev make dpkg-dev xz-utils
    ensure_deb_src
    mkdir -p "$src"
    (cd "$src" && apt-get source --download-only kubernetes >&2) || die "apt-get source kubernetes failed"
    local dscs=("$src"/kubernetes_*.dsc)
    [[ -f ${dscs[-1]} ]] || die "no kubernetes .dsc in $src"

    # The marker tells a fully prepared tree from one cut short.
    if [[ ! -f $tree/.cloudkit-prepared ]]; then
        rm -rf "$tree"
        (cd "$src" && dpkg-source -x --no-check "${dscs[-1]}" k8s >&2) || die "dpkg-source -x failed"
        rm -rf "$tree/vendor/github.com/modern-go/reflect2"
        cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
        # A GOPATH layout, because this release builds with GO111MODULE=off.
        mkdir -p "$tree/.go/src/k8s.io"
        ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
        touch "$tree/.cloudkit-prepared"
    fi

    # A throwaway HOME keeps the build off the user's Go caches and settings.
    local home buildlog=$src/build.log
    home=$(mktemp -d)
    if ! (cd "$tree" && env HOME="$home" GOPATH="$tree/.go" PATH="/usr/lib/go/bin:$PATH" \
        CGO_ENABLED=0 GO111MODULE=off GOFLAGS= make WHAT=cmd/kube-apiserver) >"$buildlog" 2>&1; then
        rm -rf "$home"
        tail -n 40 "$buildlog" >&2
        die "kube-apiserver build failed; full log: $buildlog"
    fi
    rm -rf "$home"
    apiserver_ok "$tree/_output/bin/kube-apiserver" || die "built kube-apiserver does not run; see $buildlog"
    install_apiserver_bin "$tree/_output/bin/kube-apiserver"
    # ~1.5 GB; the downloaded source packages stay for a rebuild.
    rm -rf "$tree"
    log "kube-apiserver installed at $APISERVER_BIN"
}

# --- moto --------------------------------------------------------------------

# Prints a python interpreter that can run moto's server, installing moto into
# a venv under the cache when the default python3 lacks it (a venv also sidesteps
# Debian's "externally managed" system python).
moto_python() {
    local py venv=$CACHE/venv
    if command -v python3 >/dev/null && moto_usable python3; then
        python3 -c 'import sys; print(sys.executable)'
        return
    fi
    py=$venv/bin/python
    if ! { [[ -x $py ]] && moto_usable "$py"; }; then
        command -v python3 >/dev/null || apt_ensure python3
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
            apt_ensure python3-venv
        fi
        log "installing moto[server] into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || die "python3 -m venv failed"
        "$py" -m pip install -q "moto[server]==$MOTO_VERSION" >&2 || die "pip install moto[server] failed"
    fi
    echo "$py"
}

# Pinned: scripts/moto_server.py patches a moto internal (S3 XML roots, wrong up to and
# including 5.2.5), so a newer moto must be checked before it is allowed in.
MOTO_VERSION=5.2.5
moto_usable() {
    "$1" - <<PY 2>/dev/null
import moto, moto.server
have = tuple(int(x) for x in moto.__version__.split(".")[:3])
raise SystemExit(have != tuple(int(x) for x in "$MOTO_VERSION".split(".")))
PY
}

# --- Azurite -----------------------------------------------------------------

# Pinned like moto: the e2e tests rely on what this version stores and answers.
AZURITE_VERSION=3.37.0
AZURITE_DIR=$CACHE/azurite
AZURITE_BIN=$AZURITE_DIR/node_modules/.bin/azurite

azurite_ok() {
    [[ -x $AZURITE_BIN ]] && [[ $("$AZURITE_BIN" --version 2>/dev/null) == "$AZURITE_VERSION" ]]
}

# Installs Azurite from npm into the cache (Debian's nodejs and npm when missing).
ensure_azurite() {
    azurite_ok && return
    command -v npm >/dev/null || apt_ensure nodejs npm
    log "installing azurite@$AZURITE_VERSION into $AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2 \
        || die "npm install azurite@$AZURITE_VERSION failed"
    azurite_ok || die "azurite from npm does not run: $AZURITE_BIN --version"
}

# --- GCP emulators ---------------------------------------------------------------

# gcp-storage-emulator (PyPI) in a venv of its own under the cache, installed the way
# moto is: its dependencies must not move moto's pinned ones.
GCS_EMULATOR_VERSION=2026.7.19
GCS_VENV=$CACHE/gcs-venv
GCS_BIN=$GCS_VENV/bin/gcp-storage-emulator

gcs_emulator_ok() {
    # Captured, not piped into grep -q: with pipefail pip's broken pipe would fail the check.
    local shown
    [[ -x $GCS_BIN ]] && shown=$("$GCS_VENV/bin/python" -m pip show gcp-storage-emulator 2>/dev/null) \
        && grep -qx "Version: $GCS_EMULATOR_VERSION" <<<"$shown"
}

ensure_gcs_emulator() {
    gcs_emulator_ok && return
    command -v python3 >/dev/null || apt_ensure python3
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_ensure python3-venv
    fi
    log "installing gcp-storage-emulator==$GCS_EMULATOR_VERSION into $GCS_VENV"
    rm -rf "$GCS_VENV"
    python3 -m venv "$GCS_VENV" >&2 || die "python3 -m venv failed"
    "$GCS_VENV/bin/python" -m pip install -q "gcp-storage-emulator==$GCS_EMULATOR_VERSION" >&2 \
        || die "pip install gcp-storage-emulator failed"
    gcs_emulator_ok || die "gcp-storage-emulator from PyPI is not usable: $GCS_BIN"
}

# The SDK emulators need java (Pub/Sub); both ship with the Google Cloud SDK, which this
# script does not install: without them, say so loudly and go on.
pubsub_available() { [[ -x $PUBSUB_BIN ]] && command -v java >/dev/null; }
bigtable_available() { [[ -x $BIGTABLE_BIN ]]; }

# --- processes ---------------------------------------------------------------

pidfile() { echo "$STATE/$1.pid"; }
logfile() { echo "$STATE/log/$1.log"; }

# The pid in NAME's pid file if that process is alive and still is NAME
# (a stale pid may have been reused by an unrelated process).
running_pid() {
    local pid f
    f=$(pidfile "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts a command as its own session (so `down` can kill the whole process
# group), detached from this shell.
spawn() {
    local name=$1
    shift
    local lf
    lf=$(logfile "$name")
    mkdir -p "$STATE/log"
    echo "=== $(date -Is) starting: $*" >>"$lf"
    # The child writes its own pid before exec, which stays right even if
    # setsid has to fork. 9>&- : don't hand the lock to the daemon.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(pidfile "$name")" "$@" \
        >>"$lf" 2>&1 </dev/null 9>&- &
    disown
}

wait_ready() {
    local name=$1 marker=$2 timeout=$3 check=$4
    local start=$SECONDS
    until $check; do
        # Grace period: the pid file appears only once the child has started.
        if ((SECONDS - start >= 2)) && ! running_pid "$name" "$marker" >/dev/null; then
            tail -n 40 "$(logfile "$name")" >&2
            die "$name exited during startup; log: $(logfile "$name")"
        fi
        if ((SECONDS - start >= timeout)); then
            tail -n 40 "$(logfile "$name")" >&2
            die "$name not ready after ${timeout}s; log: $(logfile "$name")"
        fi
        sleep 0.5
    done
}

stop() {
    local name=$1 marker=$2 pid i
    pid=$(running_pid "$name" "$marker") || { rm -f "$(pidfile "$name")"; return 0; }
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$(pidfile "$name")"
}

# Starts NAME unless it is already running; waits until healthy either way.
ensure_daemon() {
    local name=$1 marker=$2 port=$3 timeout=$4 check=$5
    shift 5
    if running_pid "$name" "$marker" >/dev/null; then
        if $check; then log "$name already running"; else log "$name is running but not healthy yet; waiting"; fi
    else
        port_busy "$port" && die "port $port (for $name) is taken by another process"
        log "starting $name on 127.0.0.1:$port"
        spawn "$name" "$@"
    fi
    wait_ready "$name" "$marker" "$timeout" "$check"
}

# --- health checks -------------------------------------------------------------

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
apiserver_healthy() {
    curl -fsS --max-time 3 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(<"$PKI/token")" \
        "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}
moto_healthy() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }
# Any HTTP answer from each of the three services (an unsigned request gets 4xx).
azurite_healthy() {
    local port
    for port in "$AZURITE_BLOB_PORT" "$AZURITE_QUEUE_PORT" "$AZURITE_TABLE_PORT"; do
        [[ $(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$AZURITE_ACCOUNT?comp=list" 2>/dev/null) =~ ^[1-5][0-9][0-9]$ ]] \
            || return 1
    done
}

azurite_entra_healthy() {
    local port
    for port in "$AZURITE_ENTRA_BLOB_PORT" "$AZURITE_ENTRA_QUEUE_PORT" "$AZURITE_ENTRA_TABLE_PORT"; do
        [[ $(curl -sS --max-time 2 --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/$AZURITE_ACCOUNT?comp=list" 2>/dev/null) =~ ^[1-5][0-9][0-9]$ ]] \
            || return 1
    done
}
gcs_healthy() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$GCS_PORT/storage/v1/b?project=$GCP_PROJECT" 2>/dev/null; }
# The Pub/Sub emulator answers "Ok" on its root over HTTP/1.1.
pubsub_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$PUBSUB_PORT/" 2>/dev/null | grep -q Ok; }
# The Bigtable emulator speaks gRPC only: an open port is all a shell can see.
bigtable_healthy() { port_busy "$BIGTABLE_PORT"; }

# --- credentials and config ----------------------------------------------------

# Our own CA rather than --cert-dir's self-signed cert, so the kubeconfig can
# verify TLS: strict clients (rustls) need a real CA and an IP SAN.
ensure_pki() {
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    (
        cd "$PKI"
        [[ -f token ]] || openssl rand -hex 24 >token
        # Group system:masters bypasses RBAC: a cluster admin.
        echo "$(<token),cloudkit-admin,cloudkit-admin,\"system:masters\"" >tokens.csv
        [[ -f sa.key ]] || openssl genrsa -out sa.key 2048 2>/dev/null
        if [[ ! -f ca.crt ]]; then
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
                -subj /CN=cloudkit-dev-ca 2>/dev/null
            rm -f apiserver.crt
        fi
        if [[ ! -f apiserver.crt ]]; then
            openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
                -subj /CN=kube-apiserver 2>/dev/null
            openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -days 3650 \
                -set_serial "0x$(openssl rand -hex 8)" -out apiserver.crt -extfile <(
                    echo 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc'
                    echo 'basicConstraints=CA:FALSE'
                    echo 'keyUsage=critical,digitalSignature,keyEncipherment'
                    echo 'extendedKeyUsage=serverAuth'
                ) 2>/dev/null
            rm -f apiserver.csr
        fi
        # Azurite over HTTPS (and the tests' stand-in Entra ID token endpoint) present this;
        # clients trust it through ca.crt (SSL_CERT_FILE for the controller).
        if [[ ! -f azurite.crt || azurite.crt -ot ca.crt ]]; then
            openssl req -newkey rsa:2048 -nodes -keyout azurite.key -out azurite.csr \
                -subj /CN=azurite 2>/dev/null
            openssl x509 -req -in azurite.csr -CA ca.crt -CAkey ca.key -days 3650 \
                -set_serial "0x$(openssl rand -hex 8)" -out azurite.crt -extfile <(
                    echo 'subjectAltName=IP:127.0.0.1,DNS:localhost'
                    echo 'basicConstraints=CA:FALSE'
                    echo 'keyUsage=critical,digitalSignature,keyEncipherment'
                    echo 'extendedKeyUsage=serverAuth'
                ) 2>/dev/null
            rm -f azurite.csr
        fi
    ) || die "generating keys in $PKI failed"
}

write_kubeconfig() {
    cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cloudkit-dev
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: cloudkit-admin
  user:
    token: $(<"$PKI/token")
contexts:
- name: cloudkit-dev
  context:
    cluster: cloudkit-dev
    user: cloudkit-admin
current-context: cloudkit-dev
EOF
    chmod 600 "$KUBECONFIG_FILE.tmp"
    mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

write_env() {
    {
        echo "# Written by scripts/dev-env.sh up; source it."
        printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
        echo "export CLOUDKIT_AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
        echo "# moto accepts any credentials."
        echo "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1"
        echo "# Azurite: path-style endpoints with the account in the path; its public development key."
        echo "export CLOUDKIT_AZURE_ACCOUNT=$AZURITE_ACCOUNT"
        printf 'export CLOUDKIT_AZURE_KEY=%q\n' "$AZURITE_KEY"
        echo "export CLOUDKIT_AZURE_BLOB_ENDPOINT=http://127.0.0.1:$AZURITE_BLOB_PORT/$AZURITE_ACCOUNT"
        echo "export CLOUDKIT_AZURE_QUEUE_ENDPOINT=http://127.0.0.1:$AZURITE_QUEUE_PORT/$AZURITE_ACCOUNT"
        echo "export CLOUDKIT_AZURE_TABLE_ENDPOINT=http://127.0.0.1:$AZURITE_TABLE_PORT/$AZURITE_ACCOUNT"
        echo "# The HTTPS Azurite taking Entra ID tokens; its certificate and the CA that signed it."
        echo "export CLOUDKIT_AZURE_ENTRA_BLOB_ENDPOINT=https://127.0.0.1:$AZURITE_ENTRA_BLOB_PORT/$AZURITE_ACCOUNT"
        echo "export CLOUDKIT_AZURE_ENTRA_QUEUE_ENDPOINT=https://127.0.0.1:$AZURITE_ENTRA_QUEUE_PORT/$AZURITE_ACCOUNT"
        echo "export CLOUDKIT_AZURE_ENTRA_TABLE_ENDPOINT=https://127.0.0.1:$AZURITE_ENTRA_TABLE_PORT/$AZURITE_ACCOUNT"
        printf 'export CLOUDKIT_DEV_CA=%q CLOUDKIT_DEV_TLS_CERT=%q CLOUDKIT_DEV_TLS_KEY=%q\n' \
            "$PKI/ca.crt" "$PKI/azurite.crt" "$PKI/azurite.key"
        echo "# GCP emulators: one endpoint per service; an unset one was not started (not installed)."
        echo "export CLOUDKIT_GCP_PROJECT=$GCP_PROJECT"
        echo "export CLOUDKIT_GCP_STORAGE_ENDPOINT=http://127.0.0.1:$GCS_PORT"
        if pubsub_available; then
            echo "export CLOUDKIT_GCP_PUBSUB_ENDPOINT=http://127.0.0.1:$PUBSUB_PORT"
        else
            echo "unset CLOUDKIT_GCP_PUBSUB_ENDPOINT"
        fi
        if bigtable_available; then
            echo "export CLOUDKIT_GCP_BIGTABLE_ENDPOINT=http://127.0.0.1:$BIGTABLE_PORT"
        else
            echo "unset CLOUDKIT_GCP_BIGTABLE_ENDPOINT"
        fi
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# --- commands ------------------------------------------------------------------

# One `up`/`down` at a time, also across checkouts sharing the cache.
take_lock() {
    mkdir -p "$CACHE" "$STATE"
    exec 9>"$CACHE/.lock"
    flock -w 900 9 || die "another dev-env.sh up/down holds $CACHE/.lock"
}

cmd_up() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs Debian packages)"
    take_lock
    ensure_runtime_packages
    ensure_apiserver
    local py
    py=$(moto_python)
    ensure_azurite
    ensure_gcs_emulator
    ensure_pki

    # 120 s: after the 10,000-object benchmarks its data holds ~650 MB, which took etcd
    # over 30 s to load on a 2-core machine (a fresh one starts in a second).
    ensure_daemon etcd "etcd --name cloudkit" "$ETCD_PORT" 120 etcd_healthy \
        etcd --name cloudkit --data-dir "$ETCD_DATA" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "cloudkit=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls "" --log-level warn

    ensure_daemon kube-apiserver "$APISERVER_BIN" "$API_PORT" 120 apiserver_healthy \
        "$APISERVER_BIN" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --token-auth-file="$PKI/tokens.csv" --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.key" \
        --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.96.0.0/24

    # moto_server.py is moto's own server with its deviations from AWS corrected (see the file).
    ensure_daemon moto "moto_server.py" "$MOTO_PORT" 60 moto_healthy \
        "$py" "$SCRIPTS/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT"

    # In memory: each `up` after a `down` starts empty, like the cluster.
    ensure_daemon azurite "$AZURITE_DIR" "$AZURITE_BLOB_PORT" 60 azurite_healthy \
        "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$AZURITE_BLOB_PORT" \
        --queueHost 127.0.0.1 --queuePort "$AZURITE_QUEUE_PORT" \
        --tableHost 127.0.0.1 --tablePort "$AZURITE_TABLE_PORT" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry
    ensure_daemon azurite-entra "--oauth basic" "$AZURITE_ENTRA_BLOB_PORT" 60 azurite_entra_healthy \
        "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$AZURITE_ENTRA_BLOB_PORT" \
        --queueHost 127.0.0.1 --queuePort "$AZURITE_ENTRA_QUEUE_PORT" \
        --tableHost 127.0.0.1 --tablePort "$AZURITE_ENTRA_TABLE_PORT" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry \
        --oauth basic --cert "$PKI/azurite.crt" --key "$PKI/azurite.key"

    # In memory too (the default: no --data-dir given).
    ensure_daemon gcs "$GCS_BIN" "$GCS_PORT" 60 gcs_healthy \
        "$GCS_BIN" start --host 127.0.0.1 --port "$GCS_PORT" --in-memory
    if pubsub_available; then
        ensure_daemon pubsub "$PUBSUB_MARKER" "$PUBSUB_PORT" 90 pubsub_healthy \
            "$PUBSUB_BIN" --host=127.0.0.1 --port="$PUBSUB_PORT"
    else
        log "WARNING: no Pub/Sub emulator ($PUBSUB_BIN or java missing): GCP Topic/Queue tests will SKIP"
    fi
    if bigtable_available; then
        ensure_daemon bigtable "$BIGTABLE_BIN" "$BIGTABLE_PORT" 30 bigtable_healthy \
            "$BIGTABLE_BIN" -host 127.0.0.1 -port "$BIGTABLE_PORT"
    else
        log "WARNING: no Bigtable emulator ($BIGTABLE_BIN missing): GCP Table tests will SKIP"
    fi

    write_kubeconfig
    write_env
    # The apiserver's own /readyz passed; also prove a real client works
    # through the kubeconfig, discovery included.
    kubectl --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null \
        && kubectl --kubeconfig "$KUBECONFIG_FILE" api-resources >/dev/null \
        || die "kubectl cannot use $KUBECONFIG_FILE"
    log "up: kube-apiserver https://127.0.0.1:$API_PORT, etcd 127.0.0.1:$ETCD_PORT, moto http://127.0.0.1:$MOTO_PORT, azurite http://127.0.0.1:$AZURITE_BLOB_PORT-$AZURITE_TABLE_PORT, gcs http://127.0.0.1:$GCS_PORT, pubsub 127.0.0.1:$PUBSUB_PORT, bigtable 127.0.0.1:$BIGTABLE_PORT"
    log "env: source $ENV_FILE"
}

cmd_down() {
    local purge=
    case ${1:-} in
    --purge) purge=1 ;;
    "") ;;
    *) die "unknown option for down: $1" ;;
    esac
    take_lock
    stop azurite-entra "--oauth basic"
    stop bigtable "$BIGTABLE_BIN"
    stop pubsub "$PUBSUB_MARKER"
    stop gcs "$GCS_BIN"
    stop azurite "$AZURITE_DIR"
    stop moto "moto_server.py"
    stop kube-apiserver "$APISERVER_BIN"
    stop etcd "etcd --name cloudkit"
    # Each `up` after a `down` gets an empty cluster.
    rm -rf "$ETCD_DATA"
    if [[ -n $purge ]]; then
        exec 9>&-
        rm -rf "$STATE"
        log "down: removed $STATE"
    else
        log "down: stopped (keys and kubeconfig kept in $STATE)"
    fi
}

status_of() {
    local name=$1 marker=$2 check=$3 where=$4 pid
    if ! pid=$(running_pid "$name" "$marker"); then
        echo "$name: down"
        return 1
    elif ! $check; then
        echo "$name: UNHEALTHY (pid $pid, $where)"
        return 1
    fi
    echo "$name: up (pid $pid, $where)"
}

cmd_status() {
    local bad=0
    status_of etcd "etcd --name cloudkit" etcd_healthy "127.0.0.1:$ETCD_PORT" || bad=1
    status_of kube-apiserver "$APISERVER_BIN" apiserver_healthy "https://127.0.0.1:$API_PORT" || bad=1
    status_of moto "moto_server.py" moto_healthy "http://127.0.0.1:$MOTO_PORT" || bad=1
    status_of azurite "$AZURITE_DIR" azurite_healthy \
        "blob/queue/table http://127.0.0.1:$AZURITE_BLOB_PORT-$AZURITE_TABLE_PORT" || bad=1
    status_of azurite-entra "--oauth basic" azurite_entra_healthy \
        "blob/queue/table https://127.0.0.1:$AZURITE_ENTRA_BLOB_PORT-$AZURITE_ENTRA_TABLE_PORT (Entra ID)" || bad=1
    status_of gcs "$GCS_BIN" gcs_healthy "http://127.0.0.1:$GCS_PORT" || bad=1
    if pubsub_available; then
        status_of pubsub "$PUBSUB_MARKER" pubsub_healthy "127.0.0.1:$PUBSUB_PORT" || bad=1
    else
        echo "pubsub: not installed ($PUBSUB_BIN)"
    fi
    if bigtable_available; then
        status_of bigtable "$BIGTABLE_BIN" bigtable_healthy "127.0.0.1:$BIGTABLE_PORT" || bad=1
    else
        echo "bigtable: not installed ($BIGTABLE_BIN)"
    fi
    [[ ! -f $ENV_FILE ]] || echo "env: $ENV_FILE"
    return "$bad"
}

cmd_env() {
    [[ -f $ENV_FILE ]] || log "warning: $ENV_FILE does not exist yet; run: scripts/dev-env.sh up"
    echo "$ENV_FILE"
}

case ${1:-} in
up) cmd_up ;;
down) shift; cmd_down "$@" ;;
status) cmd_status ;;
env) cmd_env ;;
-h | --help | help) usage ;;
"") usage >&2; exit 2 ;;
*) echo "dev-env: unknown command: $1" >&2; usage >&2; exit 2 ;;
esac
