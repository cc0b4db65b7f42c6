#!/usr/bin/env bash
# Schemathesis against the gateway's own /openapi.json: every documented operation is fuzzed
# from its schema, and any 5xx fails the run except a 503 the operation documents.
#
# Installs schemathesis (PyPI) into a venv under target/, builds routegate (debug, reusing what
# `cargo test` built), starts `routegate serve` on a free port with a temporary data directory,
# no API tokens and no broker, runs for ST_MAX_TIME seconds (default 90), and stops the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=4.32.5
venv=$root/target/schemathesis-venv
max_time=${ST_MAX_TIME:-90}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet --bin routegate
bin=$root/target/debug/routegate

work=$(mktemp -d)
gateway=""
cleanup() {
  if [ -n "$gateway" ] && kill -0 "$gateway" 2>/dev/null; then
    kill -TERM "$gateway" 2>/dev/null || true
    wait "$gateway" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Run from the temporary directory so that no .env file and no token variables leak in.
(
  cd "$work"
  exec env -u ROUTEGATE_HTTP_API_TOKENS -u ROUTEGATE_HTTP_API_TOKENS_FILE -u RUST_LOG \
    "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/data" \
    --set kafka.brokers=127.0.0.1:9 --set log.filter=error >"$work/gateway.log" 2>&1
) &
gateway=$!

for _ in $(seq 1 300); do
  [ -s "$work/data/gateway.addr" ] && break
  kill -0 "$gateway" 2>/dev/null || { cat "$work/gateway.log"; echo "gateway exited" >&2; exit 1; }
  sleep 0.1
done
addr=$(cat "$work/data/gateway.addr")
echo "schemathesis $version against http://$addr/openapi.json for ${max_time}s"

# One worker: with two, Hypothesis parses lambda sources from two threads and CPython 3.11.7
# fails with "AST constructor recursion depth mismatch" (CPython issue 106905), an error of the
# tool, not of the API. ST_PHASES picks phases (default: all).
status=0
# From target/, so that schemathesis keeps its cache (.schemathesis/) out of the source tree.
cd "$root/target"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/tests/schemathesis" \
  "$venv/bin/schemathesis" run "http://$addr/openapi.json" \
  --checks no_undocumented_server_error \
  --max-time "$max_time" \
  ${ST_PHASES:+--phases "$ST_PHASES"} \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color || status=$?

if [ "$status" -ne 0 ]; then
  echo "--- gateway log (tail)"
  tail -50 "$work/gateway.log"
fi
exit "$status"
