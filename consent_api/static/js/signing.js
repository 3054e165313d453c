// What the portal signs: the EIP-4361 sign-in message and the patient's EIP-712 messages
// of the contract (README, "The contract model": the public interface any client can build).
// Nonces are the signer's own (unordered, per signer): a guardian never spends the patient's.
import { ethers } from "../vendor/ethers.min.js";

export const SIWE_STATEMENT = "Sign in to Consent Ledger";
export const SIWE_TTL_MS = 10 * 60 * 1000;
export const SIGNATURE_TTL_S = 30 * 60; // deadline of relayed signatures

/** RFC 3339 / ISO-8601 UTC timestamp without milliseconds. */
export const isoSeconds = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** The exact EIP-4361 message text. */
export function siweMessage({ address, chainId, nonce, now = new Date(), domain = location.host, uri = location.origin }) {
  const issued = isoSeconds(now);
  const expires = isoSeconds(new Date(now.getTime() + SIWE_TTL_MS));
  return [
    `${domain} wants you to sign in with your Ethereum account:`,
    ethers.getAddress(address),
    "",
    SIWE_STATEMENT,
    "",
    `URI: ${uri}`,
    "Version: 1",
    `Chain ID: ${chainId}`,
    `Nonce: ${nonce}`,
    `Issued At: ${issued}`,
    `Expiration Time: ${expires}`,
  ].join("\n");
}

export const TYPES = {
  ConsentGrant: [
    { name: "patient", type: "address" },
    { name: "grantee", type: "address" },
    { name: "scope", type: "bytes32" },
    { name: "purpose", type: "bytes32" },
    { name: "validFrom", type: "uint64" },
    { name: "validUntil", type: "uint64" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  ConsentRevoke: [
    { name: "patient", type: "address" },
    { name: "consentId", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  DelegateGrant: [
    { name: "patient", type: "address" },
    { name: "delegate", type: "address" },
    { name: "validUntil", type: "uint64" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  DelegateRevoke: [
    { name: "patient", type: "address" },
    { name: "delegate", type: "address" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  RecordErase: [
    { name: "patient", type: "address" },
    { name: "recordId", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  // a patient reading their own record: accessor = patient, purpose PATRQT (no consent needed)
  AccessRequest: [
    { name: "patient", type: "address" },
    { name: "accessor", type: "address" },
    { name: "recordId", type: "bytes32" },
    { name: "version", type: "uint32" },
    { name: "purpose", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
  // the X25519 key the key custodians seal released shares to (encryptionKeyOf)
  EncryptionKey: [
    { name: "account", type: "address" },
    { name: "publicKey", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};

/** `bytes32("TREAT")`: ASCII, left-aligned, zero padded. */
export const purposeBytes32 = (code) => ethers.encodeBytes32String(code);
export const ALL_RECORDS = ethers.ZeroHash;
export const deadlineFromNow = () => Math.floor(Date.now() / 1000) + SIGNATURE_TTL_S;

export function domainFrom(chain) {
  const d = chain.eip712Domain;
  return { name: d.name, version: String(d.version), chainId: Number(d.chainId), verifyingContract: ethers.getAddress(d.verifyingContract) };
}

/** Sign one of the typed messages above; returns {message, signature} (message is the API JSON shape). */
export async function signTyped(signer, chain, primaryType, message) {
  const types = { [primaryType]: TYPES[primaryType] };
  const signature = await signer.signTypedData(domainFrom(chain), types, message);
  return { message, signature };
}

export const checksum = (a) => ethers.getAddress(a);
export function isAddress(a) { return ethers.isAddress(String(a || "").trim()); }
export function isBytes32(v) { return /^0x[0-9a-fA-F]{64}$/.test(String(v || "").trim()); }
