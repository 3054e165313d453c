// Decrypt a record version's ciphertext in the browser, exactly as the service does
// (ledger_service/crypto/envelope.py; docs/architecture.md, "Key custody"): segmented AES-256-GCM.
//
//   header  = "CLSTRM" (6) || format version 1 (1) || segment size u32be (4) || nonce prefix (7)
//   segment = AES-256-GCM(dataKey, nonce, plaintext[i], aad) = ciphertext || tag (16)
//   nonce   = nonce prefix (7) || segment index u32be (4) || last-segment flag (1)
//   aad     = "consent-ledger/v1/record-binding\0" || recordId (32) || version u64be (8) || patient (20) || header
//
// Every segment authenticates its position, whether it is the last, the header and the record version it
// belongs to, so truncation, appended bytes, reordering and a blob moved to another record all fail as one
// RecordDecryptError. Plaintext is returned only when every segment authenticated.

export const MAGIC = new TextEncoder().encode("CLSTRM");
export const FORMAT_VERSION = 1;
export const NONCE_PREFIX_SIZE = 7;
export const HEADER_SIZE = MAGIC.length + 1 + 4 + NONCE_PREFIX_SIZE;
export const TAG_SIZE = 16;
export const MIN_SEGMENT_SIZE = 16;
export const MAX_SEGMENT_SIZE = 16 * 1024 * 1024;
const MAX_SEGMENTS = 2 ** 32;
const AAD_DOMAIN = new TextEncoder().encode("consent-ledger/v1/record-binding\0");

/** The record's ciphertext did not authenticate (or the arguments are not a key and a binding). No key bytes in messages. */
export class RecordDecryptError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "RecordDecryptError";
  }
}

const failed = (why) => new RecordDecryptError(`record ciphertext failed authentication${why ? `: ${why}` : ""}`);

function bytesOf(value, length, what) {
  let bytes;
  if (value instanceof Uint8Array) bytes = value;
  else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
  else if (typeof value === "string" && /^0x([0-9a-fA-F]{2})*$/.test(value)) {
    bytes = new Uint8Array((value.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
  } else {
    throw new RecordDecryptError(`${what} must be bytes or 0x-prefixed hex`);
  }
  if (length !== undefined && bytes.length !== length) {
    throw new RecordDecryptError(`${what} must be ${length} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/**
 * The binding's AAD: domain || recordId (32) || version u64be (8) || patient (20).
 * binding: {recordId: 0x-hex of 32 bytes, version: 0 .. 2^64 - 1, patient: 0x address (any case)}.
 */
export function bindingAad({ recordId, version, patient }) {
  const id = bytesOf(recordId, 32, "recordId");
  let v;
  try { v = BigInt(version); } catch { throw new RecordDecryptError("version must be an integer"); }
  if (v < 0n || v >= 1n << 64n) throw new RecordDecryptError("version must fit in an unsigned 64-bit integer");
  if (typeof patient !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(patient)) {
    throw new RecordDecryptError("patient must be a 0x-prefixed 20-byte hex address");
  }
  const out = new Uint8Array(AAD_DOMAIN.length + 32 + 8 + 20);
  out.set(AAD_DOMAIN, 0);
  out.set(id, AAD_DOMAIN.length);
  new DataView(out.buffer).setBigUint64(AAD_DOMAIN.length + 32, v, false);
  out.set(bytesOf(patient.toLowerCase(), 20, "patient"), AAD_DOMAIN.length + 40);
  return out;
}

function segmentNonce(prefix, index, last) {
  const nonce = new Uint8Array(12);
  nonce.set(prefix, 0);
  new DataView(nonce.buffer).setUint32(NONCE_PREFIX_SIZE, index, false);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/**
 * The plaintext (Uint8Array) of a record version's ciphertext under its 32-byte data key.
 * dataKey: Uint8Array or 0x-hex; binding: {recordId, version, patient}; ciphertext: Uint8Array or ArrayBuffer.
 * Rejects with RecordDecryptError if any byte was altered, removed or added, or the binding is another's.
 */
export async function decryptRecord(dataKey, binding, ciphertext) {
  const key = bytesOf(dataKey, 32, "data key");
  const data = bytesOf(ciphertext, undefined, "ciphertext");
  const aadHead = bindingAad(binding);
  if (data.length < HEADER_SIZE) throw failed("truncated header");
  const header = data.subarray(0, HEADER_SIZE);
  const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
  const segmentSize = view.getUint32(MAGIC.length + 1, false);
  const magicOk = MAGIC.every((b, i) => header[i] === b);
  if (!magicOk || header[MAGIC.length] !== FORMAT_VERSION || segmentSize < MIN_SEGMENT_SIZE || segmentSize > MAX_SEGMENT_SIZE) {
    throw failed("bad header"); // the header is authenticated data: the same failure as a bad tag
  }
  const prefix = header.slice(MAGIC.length + 5, HEADER_SIZE);
  const aad = new Uint8Array(aadHead.length + HEADER_SIZE);
  aad.set(aadHead, 0);
  aad.set(header, aadHead.length);

  const body = data.subarray(HEADER_SIZE);
  const segCt = segmentSize + TAG_SIZE;
  // Full segments are never last while bytes follow them; whatever ends the body is the last segment.
  const count = Math.max(1, Math.ceil(body.length / segCt));
  if (count > MAX_SEGMENTS) throw failed("too many segments");
  const lastSize = body.length - (count - 1) * segCt;
  if (lastSize < TAG_SIZE) throw failed("truncated");

  let aesKey;
  try {
    aesKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  } catch (err) {
    throw new RecordDecryptError("the data key is not an AES-256 key", { cause: err });
  }
  const out = new Uint8Array(body.length - count * TAG_SIZE);
  let at = 0;
  for (let index = 0; index < count; index++) {
    const last = index === count - 1;
    const segment = body.subarray(index * segCt, last ? body.length : (index + 1) * segCt);
    let plain;
    try {
      plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: segmentNonce(prefix, index, last), additionalData: aad, tagLength: 128 },
        aesKey,
        segment,
      );
    } catch {
      out.fill(0);
      throw failed(`segment ${index}`);
    }
    out.set(new Uint8Array(plain), at);
    at += plain.byteLength;
  }
  return out;
}
