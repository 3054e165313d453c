// Threshold key custody in the browser (docs/architecture.md, "Key custody"): open the data-key shares
// custodians release to this accessor and combine them into the record version's data key.
//
// A share is Shamir's over GF(2^8): 32 bytes of y then the 1-byte x, x = the custodian's index (the layout
// of shamir-secret-sharing, so the service's Python split combines here). Each share arrives sealed with
// HPKE (RFC 9180) base mode, single shot: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, empty AAD;
// sealed = enc (32) || ciphertext (33 + 16). `info` binds the chain, the ledger, the record version, the
// custodian index and the recipient's public key, so a share opens only for the slot it was sealed for.
// Bytes are plain Uint8Array; every function also takes 0x-prefixed hex, as the JSON carries them.
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "../vendor/hpke/core/mod.js";
import { combine } from "../vendor/shamir-secret-sharing/index.js";

export const INFO_DOMAIN = new TextEncoder().encode("consent-ledger/v2/key-share\0");
export const DATA_KEY_SIZE = 32;
export const SHARE_SIZE = DATA_KEY_SIZE + 1;
export const PUBLIC_KEY_SIZE = 32;
export const ENC_SIZE = 32;
export const SEALED_SHARE_SIZE = ENC_SIZE + SHARE_SIZE + 16;
export const INFO_SIZE = INFO_DOMAIN.length + 32 + 20 + 32 + 4 + 1 + PUBLIC_KEY_SIZE;

/** Shares that do not open or do not combine. Messages name what was wrong, never key or share bytes. */
export class KeyShareError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "KeyShareError";
  }
}

// The suite is built lazily: WebCrypto (crypto.subtle) exists only in a secure context (https or localhost).
let suite = null;
function hpkeSuite() {
  if (suite === null) {
    suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
  }
  return suite;
}

// ---------------------------------------------------------------- bytes and hex

/** 0x-prefixed lowercase hex of `bytes`. */
export function toHex(bytes) {
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a 0x-prefixed hex string (or a copy of a Uint8Array); `length` checks the size when given. */
export function fromHex(value, length, what = "value") {
  let bytes;
  if (value instanceof Uint8Array) {
    bytes = new Uint8Array(value);
  } else if (typeof value === "string" && /^0x([0-9a-fA-F]{2})*$/.test(value)) {
    bytes = new Uint8Array((value.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
  } else {
    throw new KeyShareError(`${what} must be a Uint8Array or 0x-prefixed hex`);
  }
  if (length !== undefined && bytes.length !== length) {
    throw new KeyShareError(`${what} must be ${length} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/** Big-endian unsigned integer of `size` bytes (chain id, version). */
function uintBytes(value, size, what) {
  let n;
  try {
    n = BigInt(value);
  } catch {
    throw new KeyShareError(`${what} must be an integer`);
  }
  if (n < 0n || n >= 1n << BigInt(8 * size)) throw new KeyShareError(`${what} does not fit in ${size} bytes`);
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------- info

/**
 * HPKE `info` of a sealed share: "consent-ledger/v2/key-share\0" || chainId (32, big-endian) || ledger (20)
 * || recordId (32) || version (4, big-endian) || custodian index (1) || recipient X25519 public key (32).
 * chainId: number, bigint or integer string; ledger: 0x address; version: 1 .. 2^32 - 1; index: 1 .. 255.
 */
export function shareInfo({ chainId, ledger, recordId, version, index, recipientPublicKey }) {
  if (!Number.isInteger(index) || index < 1 || index > 255) {
    throw new KeyShareError(`a custodian index is 1 to 255, got ${index}`);
  }
  if (!(Number(version) >= 1)) throw new KeyShareError("a share's version is 1 to 2^32 - 1");
  return concat([
    INFO_DOMAIN,
    uintBytes(chainId, 32, "chainId"),
    fromHex(ledger, 20, "ledger address"),
    fromHex(recordId, 32, "recordId"),
    uintBytes(version, 4, "version"),
    Uint8Array.of(index),
    fromHex(recipientPublicKey, PUBLIC_KEY_SIZE, "recipient public key"),
  ]);
}

// ---------------------------------------------------------------- open and combine

/**
 * Open bytes HPKE-sealed (the suite above; sealed = enc (32) || ciphertext) to the raw X25519 private key
 * `recipientPrivateKey` under `info`; rejects with KeyShareError(`failure`) if they do not open. The one
 * opening of the portal: key shares and record labels (docs/architecture.md, "Record titles") both use it.
 */
export async function openSealed(sealed, recipientPrivateKey, info, failure = "the sealed bytes do not open with this key") {
  const sealedBytes = fromHex(sealed, undefined, "sealed bytes");
  const hpke = hpkeSuite();
  let recipientKey;
  try {
    recipientKey = await hpke.kem.importKey("raw", fromHex(recipientPrivateKey, 32, "recipient private key"), false);
  } catch (err) {
    if (err instanceof KeyShareError) throw err;
    throw new KeyShareError("the recipient private key is not an X25519 key", { cause: err });
  }
  try {
    const plaintext = await hpke.open({ recipientKey, enc: sealedBytes.slice(0, ENC_SIZE), info }, sealedBytes.slice(ENC_SIZE));
    return new Uint8Array(plaintext);
  } catch (err) {
    throw new KeyShareError(failure, { cause: err });
  }
}

/**
 * Open custodian `index`'s share of (chainId, ledger, recordId, version), sealed to `recipientPublicKey`
 * whose raw 32-byte X25519 private key is `recipientPrivateKey`. Resolves to the 33-byte share (y || x);
 * rejects with KeyShareError if the sealed bytes were altered, sealed to another key or for another slot.
 */
export async function openShare({ sealed, recipientPrivateKey, chainId, ledger, recordId, version, index, recipientPublicKey }) {
  const sealedBytes = fromHex(sealed, SEALED_SHARE_SIZE, "sealed share");
  const info = shareInfo({ chainId, ledger, recordId, version, index, recipientPublicKey });
  const share = await openSealed(sealedBytes, recipientPrivateKey, info, "the sealed share does not open with this key for this record version");
  if (share.length !== SHARE_SIZE || share[SHARE_SIZE - 1] !== index) {
    throw new KeyShareError(`the sealed share is not custodian ${index}'s share`);
  }
  return share;
}

/**
 * The data key (32 bytes) from two or more opened shares (Uint8Array or 0x-hex, 33 bytes each, distinct
 * non-zero x). Fewer shares than the threshold give unrelated bytes: the scheme cannot tell.
 */
export async function combineShares(shares) {
  if (!Array.isArray(shares) || shares.length < 2) {
    throw new KeyShareError(`need at least 2 key shares to combine, got ${Array.isArray(shares) ? shares.length : 0}`);
  }
  const bytes = shares.map((s) => fromHex(s, SHARE_SIZE, "key share"));
  const xs = bytes.map((s) => s[SHARE_SIZE - 1]);
  if (xs.includes(0)) throw new KeyShareError("a key share has x = 0");
  if (new Set(xs).size !== xs.length) throw new KeyShareError("two key shares have the same x coordinate");
  return combine(bytes);
}
