#!/usr/bin/env bash
# Paired TLS / permission cost: plain, tls, perms interleaved, ROUNDS rounds.
set -u
# Usage: tests/Loom.Bench/security-paired.sh [ROUNDS]   (docs/security.md, "What TLS and permission checks cost")
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
L="$root/loom"; D="$(mktemp -d)"; ROUNDS=${1:-3}
cp "$root/tests/Loom.Bench/security-perms.yaml" "$D/perms.yaml"
[ -f $D/certs/ca.pem ] || $L certs dev --dir $D/certs >/dev/null
for r in $(seq 1 $ROUNDS); do
  for cfg in plain tls perms; do
    args=(); envs=()
    case $cfg in
      tls) args=(--tls-cert $D/certs/server.pem --tls-key $D/certs/server.key); envs=(LOOM_TLS_CA=$D/certs/ca.pem);;
      perms) args=(--config $D/perms.yaml);;
    esac
    $L up --grpc-port 0 --http-port 0 "${args[@]}" > $D/up.log 2>&1 & pid=$!
    for i in $(seq 1 100); do grep -q "listening" $D/up.log && break; sleep 0.2; done
    url=$(grep -oE "grpc=[^ ]+" $D/up.log | head -1 | cut -d= -f2)
    ps=$(env "${envs[@]}" $L bench pubsub --url $url --runs 1 --events 300000 2>&1 | grep -E "^\| pubsub" | awk -F'|' '{print $5}')
    rp=$(env "${envs[@]}" $L bench rpc --url $url --runs 1 --calls 3000 --warmup 500 2>&1 | grep -E "^\| rpc" | head -2 | awk -F'|' '{printf "%s ", $5}')
    echo "$r $cfg pubsub=$ps rpc p50/p90 us=$rp"
    kill $pid; wait $pid 2>/dev/null
  done
done
