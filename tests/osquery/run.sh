#!/usr/bin/env bash
# jailer-extension against a stand-in osquery core over the real Thrift
# protocol: builds the binary, makes (or reuses) a virtualenv with the
# pinned Python packages, and runs pytest. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

echo "== cargo build -p jailer-extension"
cargo build -p jailer-extension ${CI:+--locked}
target="${CARGO_TARGET_DIR:-$root/target}"
export JAILER_EXTENSION="$target/debug/jailer-extension"

venv="$here/.venv"
if ! cmp -s "$here/requirements.txt" "$venv/.requirements" 2>/dev/null; then
    echo "== virtualenv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.requirements"
fi

echo "== pytest tests/osquery"
exec "$venv/bin/python" -m pytest "$here" -q -p no:cacheprovider "$@"
