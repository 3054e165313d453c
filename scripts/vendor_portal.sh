#!/usr/bin/env bash
# Copy the portal's third-party browser code from node_modules into
# consent_api/static/vendor/ so the portal works with no internet.
# Run by `make setup` after `npm ci`; idempotent. The vendor dir is gitignored.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/node_modules/ethers/dist"
dest="$root/consent_api/static/vendor"
if [[ ! -f "$src/ethers.min.js" ]]; then
  echo "vendor_portal: $src/ethers.min.js is missing; run 'npm ci' first" >&2
  exit 1
fi
mkdir -p "$dest"
# ESM build (the portal imports it as an ES module) and the UMD build for other pages.
install -m 0644 "$src/ethers.min.js" "$dest/ethers.min.js"
install -m 0644 "$src/ethers.umd.min.js" "$dest/ethers.umd.min.js"
version="$(node -p 'require(process.argv[1]).version' "$root/node_modules/ethers/package.json")"
printf '{"ethers": "%s"}\n' "$version" > "$dest/VERSIONS.json"
echo "vendor_portal: ethers $version -> ${dest#"$root"/}"
