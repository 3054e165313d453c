#!/usr/bin/env bash
# Call this validator's JSON-RPC from inside its container (the image has no curl):
#   docker compose exec validator-3 bash /config/rpc.sh qbft_getValidatorsByBlockNumber '["latest"]'
#   docker compose exec validator-3 bash /config/rpc.sh qbft_proposeValidatorVote '["0xNEW...", true]'
set -euo pipefail
method="${1:?usage: rpc.sh METHOD [PARAMS_JSON]}"
params="${2:-[]}"
body=$(printf '{"jsonrpc":"2.0","id":1,"method":"%s","params":%s}' "$method" "$params")
exec 3<>"/dev/tcp/127.0.0.1/${BESU_RPC_HTTP_PORT:-8545}"
printf 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
  "${#body}" "$body" >&3
sed -e '1,/^\r$/d' <&3
echo
