#!/usr/bin/env bash
# Copy the portal's third-party browser code from node_modules into
# consent_api/static/vendor/ so the portal and /docs work with no internet.
# Run by `make setup` after `npm ci`; idempotent. The vendor dir is gitignored.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="$root/node_modules"
src="$modules/ethers/dist"
swagger="$modules/swagger-ui-dist"
dest="$root/consent_api/static/vendor"
for needed in "$src/ethers.min.js" "$swagger/swagger-ui-bundle.js"; do
  if [[ ! -f "$needed" ]]; then
    echo "vendor_portal: $needed is missing; run 'npm ci' first" >&2
    exit 1
  fi
done
mkdir -p "$dest"
# ESM build (the portal imports it as an ES module) and the UMD build for other pages.
install -m 0644 "$src/ethers.min.js" "$dest/ethers.min.js"
install -m 0644 "$src/ethers.umd.min.js" "$dest/ethers.umd.min.js"
# The API docs page (/docs): swagger-ui's browser bundle, its stylesheet and favicon.
install -m 0644 "$swagger/swagger-ui-bundle.js" "$dest/swagger-ui-bundle.js"
install -m 0644 "$swagger/swagger-ui.css" "$dest/swagger-ui.css"
install -m 0644 "$swagger/favicon-32x32.png" "$dest/swagger-ui-favicon.png"
version_of() { node -p 'require(process.argv[1]).version' "$modules/$1/package.json"; }
ethers_version="$(version_of ethers)"
swagger_version="$(version_of swagger-ui-dist)"
printf '{"ethers": "%s", "swagger-ui-dist": "%s"}\n' "$ethers_version" "$swagger_version" > "$dest/VERSIONS.json"
echo "vendor_portal: ethers $ethers_version, swagger-ui-dist $swagger_version -> ${dest#"$root"/}"
