#!/bin/sh
# Kubo /container-init.d hook: the official image runs it on every start, after `ipfs init` and
# before the daemon. It makes the node a member of the private swarm only:
#  - installs the swarm key from the compose secret (every start, so rotating the key is
#    "replace the secret file, restart both nodes");
#  - removes every public bootstrap peer and bootstraps/peers with the other Kubo nodes named in
#    KUBO_PEERS (their peer ids are read from their RPC API; a peer that is not up yet is skipped:
#    it will dial us, and IPFS Cluster also connects the swarms of its peers);
#  - keeps the RPC API on the internal network for IPFS Cluster, the gateway on loopback only,
#    no relays, no AutoNAT service, DHT-only routing (no public HTTP routers).
set -eu

if [ -n "${SWARM_KEY_SECRET:-}" ]; then
  rm -f "$IPFS_PATH/swarm.key"
  cp "$SWARM_KEY_SECRET" "$IPFS_PATH/swarm.key"
  chmod 0400 "$IPFS_PATH/swarm.key"
fi
if [ ! -s "$IPFS_PATH/swarm.key" ]; then
  echo "init-private: no swarm.key; refusing to start a node outside the private swarm" >&2
  exit 1
fi

ipfs bootstrap rm --all >/dev/null
ipfs config Addresses.API /ip4/0.0.0.0/tcp/5001
ipfs config Addresses.Gateway /ip4/127.0.0.1/tcp/8080
ipfs config --json Addresses.Swarm '["/ip4/0.0.0.0/tcp/4001"]'
ipfs config Routing.Type dht
ipfs config --json Swarm.RelayClient.Enabled false
ipfs config --json Swarm.RelayService.Enabled false
ipfs config AutoNAT.ServiceMode disabled

peering="["
for peer in ${KUBO_PEERS:-}; do
  id=$(wget -q -T 5 -O - --post-data='' "http://${peer}:5001/api/v0/id" 2>/dev/null \
    | sed -n 's/.*"ID": *"\([^"]*\)".*/\1/p' || true)
  if [ -n "$id" ]; then
    ipfs bootstrap add "/dns4/${peer}/tcp/4001/p2p/${id}" >/dev/null
    [ "$peering" = "[" ] || peering="${peering},"
    peering="${peering}{\"ID\":\"${id}\",\"Addrs\":[\"/dns4/${peer}/tcp/4001\"]}"
    echo "init-private: bootstrapping with ${peer} (${id})"
  else
    echo "init-private: ${peer} is not up yet; it will dial this node"
  fi
done
ipfs config --json Peering.Peers "${peering}]"
