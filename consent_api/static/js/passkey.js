// Passkey patient accounts, the browser's side (docs/architecture.md, "Passkey accounts"). The patient's
// ledger address is a PatientAccount contract that answers ERC-1271 for WebAuthn assertions of its passkeys;
// the page makes those assertions with navigator.credentials and encodes them as the account expects.
// No key leaves the authenticator. This browser remembers only a hint (the account address and the ids of
// its credentials, all public) so that the next sign-in takes one prompt.
import { ethers } from "../vendor/ethers.min.js";
import { api } from "./api.js";
import { N as P256_N, recoverPublicKeys } from "./p256.js";

// The PRF extension's input (the authenticator hashes it with its own per-credential secret): the output,
// never sent anywhere, is the key material of the patient's record-reading key (own_records.js).
export const PRF_INPUT = new TextEncoder().encode("consent-ledger/v2/passkey-prf/record-reading-key");
export const ACCOUNT_DOMAIN = { name: "Consent Ledger Patient Account", version: "1" };
export const PASSKEY_TYPES = {
  AddPasskey: [
    { name: "qx", type: "bytes32" },
    { name: "qy", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  RemovePasskey: [
    { name: "qx", type: "bytes32" },
    { name: "qy", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
// abi.encode(bytes32 r, bytes32 s, uint256 challengeIndex, uint256 typeIndex, bytes authenticatorData, string clientDataJSON)
const SIGNATURE_ABI = ["bytes32", "bytes32", "uint256", "uint256", "bytes", "string"];
const HALF_N = P256_N >> 1n;
const PROMPT_TIMEOUT_MS = 120_000;
const HINTS_KEY = "consentLedger.passkeys";

// What a credential's user.id (returned as userHandle by every assertion) says about its account: the first
// passkey cannot carry its account's address, which derives from the passkey's own public key and so is known
// only after creation; a passkey added later carries it. Random bytes follow, so that two accounts on one
// authenticator never share a user.id (an authenticator keeps one discoverable credential per user.id).
const FIRST_PASSKEY = 0x01; // 0x01 || 16 random bytes: the account is accountOf(this passkey's key)
const ADDED_PASSKEY = 0x02; // 0x02 || account address (20 bytes) || 8 random bytes

// ---------------------------------------------------------------- bytes

export function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text) {
  const b64 = String(text).replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(String(text).length / 4) * 4, "=");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

const randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

function indexOf(haystack, needle) {
  const bytes = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + bytes.length <= haystack.length; i++) {
    for (let j = 0; j < bytes.length; j++) if (haystack[i + j] !== bytes[j]) continue outer;
    return i;
  }
  return -1;
}

/** (r, s) of a DER ECDSA signature (SEQUENCE { INTEGER r, INTEGER s }), as BigInts. */
export function parseDerSignature(der) {
  const bytes = new Uint8Array(der);
  let at = 0;
  const expect = (tag) => { if (bytes[at++] !== tag) throw new Error("The passkey's signature is not a DER ECDSA signature."); };
  const length = () => {
    let len = bytes[at++];
    if (len & 0x80) { const n = len & 0x7f; len = 0; for (let i = 0; i < n; i++) len = (len << 8) | bytes[at++]; }
    return len;
  };
  const integer = () => {
    expect(0x02);
    const len = length();
    const value = bytes.slice(at, at + len);
    at += len;
    return BigInt(ethers.hexlify(value));
  };
  expect(0x30);
  length();
  const r = integer();
  const s = integer();
  return { r, s };
}

/** {x, y} ("0x" + 64 hex each) of a P-256 key in SubjectPublicKeyInfo DER: its last 64 bytes, after the 0x04. */
export function publicKeyFromSpki(spki) {
  const bytes = new Uint8Array(spki);
  const point = bytes.slice(bytes.length - 65);
  if (point.length !== 65 || point[0] !== 0x04) throw new Error("The passkey's public key is not an uncompressed P-256 point.");
  return { x: ethers.hexlify(point.slice(1, 33)), y: ethers.hexlify(point.slice(33)) };
}

const sameKey = (a, b) => a && b && a.x.toLowerCase() === b.x.toLowerCase() && a.y.toLowerCase() === b.y.toLowerCase();

/**
 * The signature a PatientAccount checks, from one WebAuthn assertion: s is made low (n − s when s > n/2,
 * as OpenZeppelin's P256 requires), and the indices are the byte offsets in clientDataJSON of
 * `"challenge":"` and of `"type":"` (the opening quote of each key), as OpenZeppelin's WebAuthn reads them.
 */
export function accountSignature({ authenticatorData, clientDataJSON, signature }) {
  const json = new Uint8Array(clientDataJSON);
  let { r, s } = parseDerSignature(signature);
  if (s > HALF_N) s = P256_N - s;
  const challengeIndex = indexOf(json, '"challenge":"');
  const typeIndex = indexOf(json, '"type":"');
  if (challengeIndex < 0 || typeIndex < 0) throw new Error("The browser's client data has no challenge or no type.");
  const text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  return ethers.AbiCoder.defaultAbiCoder().encode(SIGNATURE_ABI, [
    ethers.toBeHex(r, 32), ethers.toBeHex(s, 32), challengeIndex, typeIndex, new Uint8Array(authenticatorData), text,
  ]);
}

// ---------------------------------------------------------------- can this page use passkeys?

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * {ok: true} where WebAuthn can work, else {ok: false, reason, localhost?}. A passkey's relying party is a
 * domain name: a page opened at an IP address (http://127.0.0.1:8000) cannot make one, and the same page on
 * http://localhost can (browsers treat localhost as a secure context).
 */
export function passkeySupport() {
  const host = location.hostname;
  if (IPV4.test(host) || host.includes(":") || host.startsWith("[")) {
    const loopback = /^127\./.test(host) || host === "[::1]" || host === "::1";
    let localhost = null;
    if (loopback) {
      const url = new URL(location.href);
      url.hostname = "localhost";
      localhost = url.href;
    }
    return { ok: false, reason: "ip", localhost };
  }
  if (!window.isSecureContext) return { ok: false, reason: "insecure" };
  if (!window.PublicKeyCredential || !navigator.credentials || !navigator.credentials.create) return { ok: false, reason: "unsupported" };
  return { ok: true };
}

function promptProblem(err, what) {
  if (err && (err.name === "NotAllowedError" || err.name === "AbortError")) {
    return Object.assign(new Error(`The passkey prompt was closed or timed out, so nothing was ${what}. Try again when you are ready.`), { title: "Passkey not used" });
  }
  if (err && err.name === "InvalidStateError") {
    return Object.assign(new Error("This device already holds a passkey of this account. Choose another device (a phone, a security key or another computer)."), { title: "Already on this device" });
  }
  if (err && err.name === "SecurityError") {
    return Object.assign(new Error("This browser refused passkeys for this address. Open the portal at its name (for example http://localhost:8000), not at a number."), { title: "Passkeys are not allowed here" });
  }
  return err;
}

// ---------------------------------------------------------------- creation and assertions

/**
 * Make a new passkey (ES256, discoverable, with user verification and the PRF extension): {credentialId
 * (base64url), publicKey {x, y}, prf (whether the authenticator supports it)}. `userId`: FIRST_PASSKEY or
 * ADDED_PASSKEY bytes (above); `exclude`: credential ids the authenticator must not already hold.
 */
export async function createPasskey({ userId, name, exclude = [] }) {
  let credential;
  try {
    credential = await navigator.credentials.create({
      publicKey: {
        rp: { id: location.hostname, name: "Consent Ledger" },
        user: { id: userId, name: name || "Consent Ledger patient", displayName: name || "Consent Ledger patient" },
        challenge: randomBytes(32), // nothing is attested: the key is what matters, and the chain checks every use
        pubKeyCredParams: [{ type: "public-key", alg: -7 }],
        authenticatorSelection: { residentKey: "required", requireResidentKey: true, userVerification: "required" },
        attestation: "none",
        excludeCredentials: exclude.map((id) => ({ type: "public-key", id: fromBase64url(id) })),
        timeout: PROMPT_TIMEOUT_MS,
        extensions: { prf: {} },
      },
    });
  } catch (err) {
    throw promptProblem(err, "created");
  }
  if (!credential) throw Object.assign(new Error("No passkey was made."), { title: "Passkey not used" });
  const response = credential.response;
  if (typeof response.getPublicKeyAlgorithm === "function" && response.getPublicKeyAlgorithm() !== -7) {
    throw Object.assign(new Error("This authenticator made a key of another kind than P-256; the ledger accepts P-256 passkeys only."), { title: "Passkey not usable" });
  }
  const extensions = credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
  return {
    credentialId: base64url(credential.rawId),
    publicKey: publicKeyFromSpki(response.getPublicKey()),
    prf: Boolean(extensions.prf && extensions.prf.enabled),
  };
}

export const firstPasskeyUserId = () => Uint8Array.from([FIRST_PASSKEY, ...randomBytes(16)]);
export const addedPasskeyUserId = (account) => Uint8Array.from([ADDED_PASSKEY, ...ethers.getBytes(ethers.getAddress(account)), ...randomBytes(8)]);

/**
 * One WebAuthn assertion over `challenge` (32 bytes) by one of `allow` (credential ids; empty: any passkey of
 * this site, which the authenticator lets the user choose). The PRF extension is asked every time: its output
 * comes with the assertion, so reading a record needs no prompt of its own.
 */
export async function assertWith(challenge, { allow = [] } = {}) {
  let credential;
  try {
    credential = await navigator.credentials.get({
      publicKey: {
        challenge: ethers.getBytes(challenge),
        rpId: location.hostname,
        allowCredentials: allow.map((id) => ({ type: "public-key", id: fromBase64url(id) })),
        userVerification: "required",
        timeout: PROMPT_TIMEOUT_MS,
        extensions: { prf: { eval: { first: PRF_INPUT } } },
      },
    });
  } catch (err) {
    throw promptProblem(err, "signed");
  }
  if (!credential) throw Object.assign(new Error("No passkey answered."), { title: "Passkey not used" });
  const response = credential.response;
  const extensions = credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
  const prf = extensions.prf && extensions.prf.results && extensions.prf.results.first;
  return {
    credentialId: base64url(credential.rawId),
    userHandle: response.userHandle ? new Uint8Array(response.userHandle) : null,
    authenticatorData: new Uint8Array(response.authenticatorData),
    clientDataJSON: new Uint8Array(response.clientDataJSON),
    signature: new Uint8Array(response.signature),
    prfOutput: prf ? new Uint8Array(prf) : null,
  };
}

// ---------------------------------------------------------------- which account is this passkey's?

/**
 * The address PatientAccountFactory.accountOf(qx, qy) gives, computed here: the CREATE2 address of the
 * ERC-1167 clone of the implementation with `abi.encode(qx, qy)` as immutable arguments (OpenZeppelin's
 * Clones), salt keccak256 of those arguments. The implementation is the factory's first creation (nonce 1,
 * a contract's first nonce), made in its constructor.
 */
export function predictAccount(factory, { x, y }) {
  const deployer = ethers.getAddress(factory);
  const implementation = ethers.getCreateAddress({ from: deployer, nonce: 1 });
  const args = ethers.concat([ethers.zeroPadValue(x, 32), ethers.zeroPadValue(y, 32)]);
  const initCode = ethers.concat([
    "0x61", ethers.toBeHex(64 + 0x2d, 2), "0x3d81600a3d39f3363d3d373d3d3d363d73", implementation,
    "0x5af43d82803e903d91602b57fd5bf3", args,
  ]);
  return ethers.getCreate2Address(deployer, ethers.keccak256(args), ethers.keccak256(initCode));
}

async function accountWithPasskey(address, key) {
  let account;
  try { account = await api.account(address); } catch (err) {
    if (err && err.status === 404) return null;
    throw err;
  }
  if (!account || !account.deployed) return null;
  return !key || (account.passkeys || []).some((k) => sameKey(k, key)) ? account : null;
}

const notFound = () => Object.assign(new Error("This passkey belongs to no account on this ledger. Create an account, or choose another passkey."), { title: "No account for this passkey" });

/**
 * Ask the authenticator which account it holds (one prompt, a random challenge): {address, credentialId,
 * prfOutput}. A passkey added to an account names it in its user handle; an account's first passkey cannot
 * (see FIRST_PASSKEY), so its public key is recovered from the assertion's signature, the two candidates
 * give two addresses (predictAccount), and the account is the one the chain shows with that passkey.
 */
export async function discoverAccount(chain) {
  const factory = chain && chain.contracts && chain.contracts.PatientAccountFactory;
  if (!factory) throw Object.assign(new Error("This ledger has no passkey accounts."), { title: "Passkeys are not available" });
  const a = await assertWith(randomBytes(32));
  const handle = a.userHandle || new Uint8Array(0);
  let address = null;
  if (handle[0] === ADDED_PASSKEY && handle.length >= 21) {
    address = ethers.getAddress(ethers.hexlify(handle.slice(1, 21)));
    if (!(await accountWithPasskey(address, null))) throw notFound();
  } else if (handle[0] === FIRST_PASSKEY) {
    const signed = new Uint8Array(a.authenticatorData.length + 32);
    signed.set(a.authenticatorData, 0);
    signed.set(new Uint8Array(await crypto.subtle.digest("SHA-256", a.clientDataJSON)), a.authenticatorData.length);
    const digest = BigInt(ethers.hexlify(new Uint8Array(await crypto.subtle.digest("SHA-256", signed))));
    const { r, s } = parseDerSignature(a.signature);
    for (const q of recoverPublicKeys(digest, r, s)) {
      const key = { x: ethers.toBeHex(q.x, 32), y: ethers.toBeHex(q.y, 32) };
      const candidate = predictAccount(factory, key);
      if (await accountWithPasskey(candidate, key)) { address = candidate; break; }
    }
    if (!address) throw notFound();
  } else {
    throw Object.assign(new Error("This passkey was not made by the Consent Ledger portal."), { title: "Not a Consent Ledger passkey" });
  }
  return { address, credentialId: a.credentialId, prfOutput: a.prfOutput };
}

// ---------------------------------------------------------------- the signer

/**
 * Signs for a passkey account as the portal's other signers do (getAddress, signMessage, signTypedData):
 * the challenge of each assertion is the digest the ledger checks (the EIP-191 hash of a sign-in message,
 * the EIP-712 digest of a typed message), and the signature is accountSignature's encoding of it.
 */
export class PasskeySigner {
  constructor(address, credentialIds = []) {
    this.kind = "passkey";
    this.address = ethers.getAddress(address);
    this.credentialIds = [...credentialIds];
    this.prf = null; // {credentialId, output} of the last assertion that brought one
    this.prfSeen = null; // whether the last assertion brought a PRF output
    this.lastCredentialId = null; // the passkey that made the last assertion
  }

  async getAddress() { return this.address; }

  async signDigest(digest) {
    const a = await assertWith(digest, { allow: this.credentialIds });
    this.keepPrf(a.credentialId, a.prfOutput);
    return accountSignature(a);
  }

  signMessage(message) { return this.signDigest(ethers.hashMessage(message)); }

  signTypedData(domain, types, value) { return this.signDigest(ethers.TypedDataEncoder.hash(domain, types, value)); }

  keepPrf(credentialId, output) {
    this.lastCredentialId = credentialId;
    if (!this.credentialIds.includes(credentialId)) this.credentialIds.push(credentialId);
    this.prfSeen = Boolean(output);
    if (!output) return;
    if (this.prf) this.prf.output.fill(0);
    this.prf = { credentialId, output };
  }

  /**
   * The PRF output of the passkey in use, the key material of the record-reading key: from the last assertion,
   * or from one more prompt. Null when the authenticator has no PRF.
   */
  async prfOutput() {
    if (!this.prf) {
      const a = await assertWith(randomBytes(32), { allow: this.credentialIds });
      this.keepPrf(a.credentialId, a.prfOutput);
    }
    return this.prf;
  }

  /** What the session stores of this signer: public ids only. */
  sessionInfo() { return { kind: "passkey", credentialIds: [...this.credentialIds], prf: this.prfSeen }; }

  forget() { if (this.prf) { this.prf.output.fill(0); this.prf = null; } }
}

/** The EIP-712 message (and its domain and types) that adds or removes passkey `key` of `account`. */
export function passkeyMessage(primaryType, chain, account, key) {
  const domain = { ...ACCOUNT_DOMAIN, chainId: Number(chain.chainId), verifyingContract: ethers.getAddress(account) };
  // The account's nonces are unordered (a bitmap): a random one is as good as any and needs no lookup.
  const nonce = Number(BigInt(ethers.hexlify(randomBytes(6))));
  const deadline = Math.floor(Date.now() / 1000) + 30 * 60;
  const message = { qx: key.x, qy: key.y, nonce, deadline };
  return { domain, types: { [primaryType]: PASSKEY_TYPES[primaryType] }, message };
}

// ---------------------------------------------------------------- hints (localStorage, public)

export const passkeyHints = {
  /** [{address, credentials: [{id, x?, y?}], prf, lastUsed}], the most recently used first. */
  list() {
    try {
      const list = JSON.parse(localStorage.getItem(HINTS_KEY)) || [];
      return list.filter((e) => e && ethers.isAddress(e.address) && Array.isArray(e.credentials)).sort((a, b) => String(b.lastUsed).localeCompare(String(a.lastUsed)));
    } catch { return []; }
  },
  get(address) { return this.list().find((e) => e.address.toLowerCase() === String(address).toLowerCase()) || null; },
  /** Remember that `credential` ({id, x?, y?}) is a passkey of `address`; `prf` as last seen. */
  remember(address, credential, { prf } = {}) {
    const list = this.list();
    const at = list.findIndex((e) => e.address.toLowerCase() === address.toLowerCase());
    const entry = at >= 0 ? list[at] : { address: ethers.getAddress(address), credentials: [] };
    if (credential && !entry.credentials.some((c) => c.id === credential.id)) entry.credentials.push({ ...credential });
    if (prf !== undefined && prf !== null) entry.prf = prf;
    entry.lastUsed = new Date().toISOString();
    if (at >= 0) list[at] = entry; else list.push(entry);
    localStorage.setItem(HINTS_KEY, JSON.stringify(list));
    return entry;
  },
  forget(address) {
    localStorage.setItem(HINTS_KEY, JSON.stringify(this.list().filter((e) => e.address.toLowerCase() !== String(address).toLowerCase())));
  },
};
