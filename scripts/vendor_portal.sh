#!/usr/bin/env bash
# Copy the portal's third-party browser code from node_modules into
# consent_api/static/vendor/ so the portal and /docs work with no internet.
# Run by `make setup` after `npm ci`; idempotent. The vendor dir is gitignored.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="$root/node_modules"
src="$modules/ethers/dist"
swagger="$modules/swagger-ui-dist"
shamir="$modules/shamir-secret-sharing"
hpke_core="$modules/@hpke/core"
hpke_common="$modules/@hpke/common"
dest="$root/consent_api/static/vendor"
for needed in "$src/ethers.min.js" "$swagger/swagger-ui-bundle.js" "$shamir/esm/index.js" \
  "$hpke_core/esm/mod.js" "$hpke_common/esm/mod.js"; do
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

# Key shares (js/key_shares.js): shamir-secret-sharing and @hpke/core ship ES modules with bare
# specifiers ("shamir-secret-sharing/csprng", "@hpke/common") that a browser cannot resolve without a
# bundler, and the portal's CSP (script-src 'self') rules out an inline import map. So the ESM trees
# are copied keeping their relative paths, and only those specifiers are rewritten to relative paths.
rm -rf "$dest/shamir-secret-sharing" "$dest/hpke"
mkdir -p "$dest/shamir-secret-sharing"
install -m 0644 "$shamir/esm/index.js" "$shamir/esm/csprng.js" "$shamir/LICENSE" "$dest/shamir-secret-sharing/"
sed -i "s#'shamir-secret-sharing/csprng'#'./csprng.js'#" "$dest/shamir-secret-sharing/index.js"
copy_esm_tree() {  # <package dir> <dest dir>: every .js of its esm/ build, plus the licence
  (cd "$1/esm" && find . -name '*.js' -print0) | while IFS= read -r -d '' file; do
    install -D -m 0644 "$1/esm/$file" "$2/$file"
  done
  install -m 0644 "$1/LICENSE" "$2/LICENSE"
}
copy_esm_tree "$hpke_common" "$dest/hpke/common"
copy_esm_tree "$hpke_core" "$dest/hpke/core"
(cd "$dest/hpke/core" && find . -name '*.js' -print0) | while IFS= read -r -d '' file; do
  rel="${file#./}"
  up="${rel//[^\/]/}"  # one "../" per directory between the file and hpke/core
  sed -i "s#from \"@hpke/common\"#from \"${up//\//../}../common/mod.js\"#g" "$dest/hpke/core/$rel"
done
# Nothing that runs may keep a bare specifier (JSDoc examples in comments, starting with "*", may).
if grep -rnE '^[^*]*(\b(from|import) *|\bimport *\( *)["'"'"'][^./"'"'"']' --include='*.js' \
  "$dest/shamir-secret-sharing" "$dest/hpke" | grep -v 'import("crypto"); // node:crypto'; then
  echo "vendor_portal: a vendored module still imports a bare specifier (above)" >&2
  exit 1
fi
# QR codes of a patient's ID (js/qr.js): qrcode-generator's ES module, licence in its header.
qrcode="$modules/qrcode-generator/dist/qrcode.mjs"
if [[ ! -f "$qrcode" ]]; then
  echo "vendor_portal: $qrcode is missing; run 'npm ci' first" >&2
  exit 1
fi
install -m 0644 "$qrcode" "$dest/qrcode.mjs"
version_of() { node -p 'require(process.argv[1]).version' "$modules/$1/package.json"; }
ethers_version="$(version_of ethers)"
swagger_version="$(version_of swagger-ui-dist)"
shamir_version="$(version_of shamir-secret-sharing)"
hpke_core_version="$(version_of @hpke/core)"
hpke_common_version="$(version_of @hpke/common)"
printf '{"ethers": "%s", "swagger-ui-dist": "%s", "shamir-secret-sharing": "%s", "@hpke/core": "%s", "@hpke/common": "%s"}\n' \
  "$ethers_version" "$swagger_version" "$shamir_version" "$hpke_core_version" "$hpke_common_version" > "$dest/VERSIONS.json"
echo "vendor_portal: ethers $ethers_version, swagger-ui-dist $swagger_version, shamir-secret-sharing $shamir_version," \
  "@hpke/core $hpke_core_version, @hpke/common $hpke_common_version -> ${dest#"$root"/}"
