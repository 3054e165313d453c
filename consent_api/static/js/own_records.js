// A patient reads their own record in this browser (docs/architecture.md, "Key custody"): the access is
// logged on the ledger like any other (an AccessRequest with accessor = patient and purpose PATRQT, which
// needs no consent), each key custodian releases its share of the data key sealed to the patient's own
// encryption key against that disclosure, and the page opens two shares, rebuilds the data key and decrypts
// the ciphertext the hub stores. The patient's X25519 private key is derived here from a signature of their
// wallet, or for a passkey account from the passkey's PRF output (WebAuthn's prf extension, passkey.js), kept
// in this page's memory only, and sent nowhere; the hub and the custodians see its public key. Each passkey
// has its own PRF secret, so each device derives its own key: reading on another device registers that
// device's key (the custodians seal every release to the key registered at that moment).
import { ethers } from "../vendor/ethers.min.js";
import { ApiProblem, api, idempotencyKey, problemFrom } from "./api.js";
import { combineShares, openShare, toHex } from "./key_shares.js";
import { decryptRecord } from "./record_decrypt.js";
import { session } from "./session.js";
import { deadlineFromNow, purposeBytes32, signTyped } from "./signing.js";

/** HKDF-SHA256 salt of the patient's key; info = chainId (32, big-endian) || ledger address (20). */
export const KEY_SALT = new TextEncoder().encode("consent-ledger/v2/patient-encryption-key");
// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): WebCrypto imports private X25519 keys only so.
const X25519_PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

/** The exact EIP-191 message a patient signs to derive their record decryption key. It authorizes nothing. */
export function keyDerivationMessage(chain) {
  const ledger = ethers.getAddress(chain.contracts.ConsentLedger);
  return `Consent Ledger: derive my record decryption key for ledger ${ledger} on chain ${chain.chainId}. Signing this does not authorize any access.`;
}

function ledgerInfo(chain) {
  const info = new Uint8Array(52);
  info.set(ethers.getBytes(ethers.toBeHex(BigInt(chain.chainId), 32)), 0);
  info.set(ethers.getBytes(ethers.getAddress(chain.contracts.ConsentLedger)), 32);
  return info;
}

function base64UrlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * The X25519 key pair of a signature of keyDerivationMessage: HKDF-SHA256(ikm = the 65-byte signature
 * r || s || v in its canonical form, salt = KEY_SALT, info = chainId || ledger) gives the 32-byte private key.
 * ECDSA signatures of a wallet are deterministic (RFC 6979), so the same wallet derives the same key anywhere.
 */
export async function keyPairFromSignature(signature, chain) {
  let canonical;
  try {
    canonical = ethers.getBytes(ethers.Signature.from(signature).serialized);
  } catch (err) {
    throw new Error("Your wallet's signature is not a standard Ethereum signature; no key could be derived from it.", { cause: err });
  }
  return keyPairFromSecret(canonical, chain);
}

/**
 * The X25519 key pair of a passkey account on this device: HKDF-SHA256 as above, with ikm = the 32-byte PRF
 * output of the passkey for passkey.js's PRF_INPUT. The authenticator gives the same output for the same
 * passkey and input every time, so the key is the same at every reading on this device.
 */
export function keyPairFromPrf(prfOutput, chain) {
  return keyPairFromSecret(prfOutput, chain);
}

async function keyPairFromSecret(secret, chain) {
  const ikm = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: KEY_SALT, info: ledgerInfo(chain) }, ikm, 256);
  const privateKey = new Uint8Array(bits);
  const pkcs8 = new Uint8Array(X25519_PKCS8_PREFIX.length + 32);
  pkcs8.set(X25519_PKCS8_PREFIX, 0);
  pkcs8.set(privateKey, X25519_PKCS8_PREFIX.length);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  pkcs8.fill(0);
  return { privateKey, publicKey: toHex(base64UrlBytes(jwk.x)) };
}

// The derived key, per signed-in account and ledger, in this page's memory until sign-out.
const derivedKeys = new Map();
session.on((event) => {
  if (event === "signout" || event === "expired") {
    for (const { privateKey } of derivedKeys.values()) privateKey.fill(0);
    derivedKeys.clear();
  }
});

/** Reading in the browser needs the passkey's PRF; said plainly when the device does not have it. */
export const NO_PRF = Object.freeze({
  title: "Your passkey cannot open records in this browser",
  detail: "The device that holds this passkey cannot make the key that opens your records here, so reading is turned off. Sign in with a passkey on another device (recent phones and computers can) to read your records.",
});

async function patientKey(signer, address, chain) {
  if (signer.kind === "passkey") {
    const prf = await signer.prfOutput();
    if (!prf) throw new ApiProblem(NO_PRF);
    const slot = `${address}|${chain.chainId}|${chain.contracts.ConsentLedger}|${prf.credentialId}`.toLowerCase();
    if (!derivedKeys.has(slot)) derivedKeys.set(slot, await keyPairFromPrf(prf.output, chain));
    return derivedKeys.get(slot);
  }
  const slot = `${address}|${chain.chainId}|${chain.contracts.ConsentLedger}`.toLowerCase();
  if (!derivedKeys.has(slot)) {
    const signature = await signer.signMessage(keyDerivationMessage(chain));
    derivedKeys.set(slot, await keyPairFromSignature(signature, chain));
  }
  return derivedKeys.get(slot);
}

/** Publish the public key on the ledger (a signed EncryptionKey) unless encryptionKeyOf(address) is it already. */
async function ensurePublished(signer, address, chain, publicKey) {
  const onChain = await api.encryptionKey(address);
  if (String(onChain.publicKey).toLowerCase() === publicKey) return false;
  const { nonce } = await api.signerNonce(address);
  const message = { account: address, publicKey, nonce: Number(nonce), deadline: deadlineFromNow() };
  const { signature } = await signTyped(signer, chain, "EncryptionKey", message);
  await api.relay("EncryptionKey", message, signature, idempotencyKey());
  return true;
}

/**
 * The signed-in patient's own key pair ({address, key: {privateKey, publicKey}, published}), derived as for a
 * read (one wallet signature or passkey PRF, then kept in memory) and published on the ledger if it is not
 * yet: record labels are sealed to the published key (docs/architecture.md, "Record titles").
 */
export async function ownKey(chain) {
  const signer = await session.signer();
  const address = ethers.getAddress(await signer.getAddress());
  const key = await patientKey(signer, address, chain);
  const published = await ensurePublished(signer, address, chain, key.publicKey);
  return { address, key, published };
}

async function askCustodian(custodian, body, signal) {
  let res;
  try {
    res = await fetch(`${custodian.url}/v1/custodian/release`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, application/problem+json" },
      body: JSON.stringify(body),
      credentials: "omit",
      signal,
    });
  } catch (err) {
    throw new ApiProblem({ status: 0, title: `Key custodian ${custodian.index} could not be reached`, detail: err.message });
  }
  if (!res.ok) throw await problemFrom(res);
  const answer = await res.json();
  if (answer.index !== custodian.index) {
    throw new ApiProblem({ title: `Key custodian ${custodian.index} answered as custodian ${answer.index}` });
  }
  return answer.sealedShare;
}

/**
 * The data key of the record version, from the first `threshold` shares the custodians release against
 * `disclosureTx` and that open with the patient's private key (the others are not waited for).
 */
function releasedDataKey({ custody, chain, record, accessor, disclosureTx, key }) {
  const abort = new AbortController();
  const body = { recordId: record.recordId, version: Number(record.version), accessor, disclosureTx };
  const slot = { chainId: chain.chainId, ledger: chain.contracts.ConsentLedger, recordId: record.recordId, version: Number(record.version) };
  return new Promise((resolve, reject) => {
    const shares = [];
    const problems = [];
    let erased = null;
    let waiting = custody.custodians.length;
    for (const custodian of custody.custodians) {
      askCustodian(custodian, body, abort.signal)
        .then((sealed) => openShare({ ...slot, sealed, index: custodian.index, recipientPrivateKey: key.privateKey, recipientPublicKey: key.publicKey }))
        .then((share) => {
          shares.push(share);
          if (shares.length === custody.threshold) {
            abort.abort();
            combineShares(shares).then(resolve, reject);
          }
        })
        .catch((err) => {
          if (err && err.status === 410) erased = err;
          else if (!(err && err.name === "AbortError")) problems.push(`custodian ${custodian.index}: ${err.detail || err.message}`);
        })
        .finally(() => {
          waiting -= 1;
          if (waiting === 0 && shares.length < custody.threshold) {
            if (erased) reject(new ApiProblem({ title: "This record was erased", detail: "Its keys were destroyed: nobody can open it any more." }));
            else reject(new ApiProblem({
              title: "Your record's key could not be put together",
              detail: `${shares.length} of the ${custody.threshold} key shares needed came back (${problems.join("; ")}). Nothing was decrypted; your access is logged. Try again later.`,
            }));
          }
        });
    }
  });
}

/**
 * Read the head version of one of the signed-in patient's own records: {plaintext (Uint8Array), mediaType,
 * disclosureTx, publishedKey}. `step(label)` is told what is happening. Every read is a disclosure on the ledger.
 */
export async function readOwnRecord(record, chain, { step = () => {} } = {}) {
  const custody = chain.custody;
  if (!custody || !custody.custodians || custody.custodians.length < custody.threshold) {
    throw new ApiProblem({ title: "Reading in the browser is not available here", detail: "This service lists no key custodians to ask for your record's key." });
  }
  const signer = await session.signer();
  const address = ethers.getAddress(await signer.getAddress());
  if (address !== ethers.getAddress(record.patient)) {
    throw new ApiProblem({ title: "Not your record", detail: "Only the patient can open their own record here." });
  }
  step("Preparing your key…");
  const key = await patientKey(signer, address, chain);
  const publishedKey = await ensurePublished(signer, address, chain, key.publicKey);

  step("Logging your access…");
  const { nonce } = await api.signerNonce(address);
  const request = {
    patient: address,
    accessor: address,
    recordId: record.recordId,
    version: Number(record.version),
    purpose: purposeBytes32("PATRQT"),
    nonce: Number(nonce),
    deadline: deadlineFromNow(),
  };
  const { signature } = await signTyped(signer, chain, "AccessRequest", request);
  const logged = await api.relay("AccessRequest", request, signature, idempotencyKey());

  step("Decrypting…");
  const [ciphertext, dataKey] = await Promise.all([
    api.blob(record.cid).then((res) => res.arrayBuffer()),
    releasedDataKey({ custody, chain, record, accessor: address, disclosureTx: logged.txHash, key }),
  ]);
  try {
    const plaintext = await decryptRecord(dataKey, { recordId: record.recordId, version: Number(record.version), patient: record.patient }, new Uint8Array(ciphertext));
    return { plaintext, mediaType: record.mediaType || "application/octet-stream", disclosureTx: logged.txHash, publishedKey };
  } catch {
    throw new ApiProblem({ title: "Your record did not decrypt", detail: "The stored copy does not match its key: it may have been altered. Nothing is shown." });
  } finally {
    dataKey.fill(0);
  }
}
