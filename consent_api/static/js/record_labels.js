// Record titles in the patient's browser (docs/architecture.md, "Record titles"). A record's label
// ({title, fileName}) is health information: the hub keeps it only HPKE-sealed to the patient's published
// encryption key, and it is opened here with the key own_records.js derives. Opened labels stay in this
// page's memory until sign-out, like the key.
//
// info = "consent-ledger/v2/record-label\0" || chainId (32, big-endian) || ledger (20) || recordId (32)
//        || label version (4, big-endian) || recipient X25519 public key (32)
import { fromHex, openSealed } from "./key_shares.js";
import { ownKey } from "./own_records.js";
import { session } from "./session.js";
import { categoryLabel } from "./ui.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export const LABEL_INFO_DOMAIN = new TextEncoder().encode("consent-ledger/v2/record-label\0");

function uint(value, size) {
  let n = BigInt(value);
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

/** HPKE info of a sealed label (the bytes ledger_service/crypto/sealing.py's label_info makes). */
export function labelInfo({ chainId, ledger, recordId, version, recipientPublicKey }) {
  const parts = [LABEL_INFO_DOMAIN, uint(chainId, 32), fromHex(ledger, 20, "ledger address"), fromHex(recordId, 32, "recordId"), uint(version, 4), fromHex(recipientPublicKey, 32, "recipient key")];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** {title, fileName} of a record's sealed label, opened with `key` ({privateKey, publicKey}); null if absent. */
export async function openLabel(record, chain, key) {
  const sealed = record.sealedLabel;
  if (!sealed || String(sealed.recipientKey).toLowerCase() !== String(key.publicKey).toLowerCase()) return null;
  const info = labelInfo({ chainId: chain.chainId, ledger: chain.contracts.ConsentLedger, recordId: record.recordId, version: sealed.version, recipientPublicKey: key.publicKey });
  const raw = await openSealed(sealed.sealed, key.privateKey, info, "this record's title does not open with your key");
  const data = JSON.parse(new TextDecoder().decode(raw));
  return { title: typeof data.title === "string" ? data.title : "", fileName: typeof data.fileName === "string" ? data.fileName : "" };
}

// Opened labels, by record id, for the signed-in account.
const opened = new Map();
session.on((event) => { if (event === "signout" || event === "expired") opened.clear(); });

/** The label this page has opened for the record (or that the list gave in clear, for its author). */
export function knownLabel(record) {
  if (record && record.title) return { title: record.title, fileName: record.fileName || "" };
  return opened.get(String(record && record.recordId).toLowerCase()) || null;
}

/** Whether some of `records` have a title this page has not opened yet. */
export const titlesHidden = (records) => records.some((r) => !r.erased && !knownLabel(r));

/**
 * Open the titles of the signed-in patient's `records`: derive the key (one wallet signature or passkey
 * prompt, silent for the demo accounts), publish it if needed, then ask `reload()` for the list again (the
 * author's node seals a copy to a newly published key) and open every copy. Resolves to the new list.
 */
export async function showTitles(chain, reload) {
  const { key } = await ownKey(chain);
  const records = await reload();
  for (const r of records) {
    if (!r.sealedLabel) continue;
    const label = await openLabel(r, chain, key);
    if (label) opened.set(r.recordId.toLowerCase(), label);
  }
  return records;
}

/** A record's name in words: its title, else its category and the day it was added. */
export function recordName(record) {
  const label = knownLabel(record);
  if (label && label.title) return label.title;
  if (!record) return "A record";
  const added = record.createdAt ? new Date(Number(record.createdAt) * 1000) : null;
  const day = added && !Number.isNaN(added.getTime()) ? `${added.getDate()} ${MONTHS[added.getMonth()]} ${added.getFullYear()}` : "";
  return `${categoryLabel(record.category)} record${day ? ` added ${day}` : ""}`;
}

/** The name a download is saved under: the original file name, else the title with `extension`, else `fallback`. */
export function downloadName(record, extension, fallback) {
  const label = knownLabel(record);
  if (label && label.fileName) return label.fileName;
  if (label && label.title) {
    const stem = label.title.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ").replace(/,/g, "").replace(/\s+/g, " ").slice(0, 120).trim().replace(/^[ .]+|[ .]+$/g, "");
    if (stem) return stem + extension;
  }
  return fallback;
}

/** The file name of a download response: RFC 6266's filename* (RFC 5987, UTF-8) first, then filename. */
export function dispositionName(header) {
  const value = String(header || "");
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(value);
  if (star) {
    try { return decodeURIComponent(star[1].trim()); } catch { /* fall through */ }
  }
  const plain = /filename\s*=\s*"([^"]*)"/i.exec(value);
  return plain ? plain[1] : "";
}
