#!/usr/bin/env bash
# Docker healthcheck for a Besu validator (the image has bash but no curl).
# Asks the node's own JSON-RPC HTTP port for /readiness: Besu answers 200 once the node has at
# least HEALTH_MIN_PEERS peers and is in sync. With 4 validators, 2 peers means 3 nodes are up,
# which is the QBFT quorum, so "healthy" also means "blocks are being produced".
set -euo pipefail
port="${BESU_RPC_HTTP_PORT:-8545}"
min_peers="${HEALTH_MIN_PEERS:-2}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /readiness?minPeers=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$min_peers" >&3
IFS= read -r -t 5 status_line <&3
[[ "$status_line" == *" 200 "* ]]
