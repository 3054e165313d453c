// HTTP client for the Consent Ledger API v1. Errors are RFC 9457 problem+json.
import { session } from "./session.js";

export class ApiProblem extends Error {
  constructor({ type = "about:blank", title, status, detail, ...rest }) {
    super(detail || title || `HTTP ${status}`);
    this.type = type;
    this.title = title || `Request failed (HTTP ${status})`;
    this.status = status;
    this.detail = detail || "";
    this.extra = rest;
  }
}

export async function problemFrom(res) {
  let body = null;
  const ct = res.headers.get("content-type") || "";
  try {
    if (ct.includes("json")) body = await res.json();
    else {
      const text = await res.text();
      body = { detail: text.slice(0, 300) };
    }
  } catch { body = {}; }
  if (body && typeof body.detail !== "string" && body.detail !== undefined) {
    // FastAPI validation errors: {detail: [{loc, msg}]}
    body.detail = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
      : JSON.stringify(body.detail);
  }
  return new ApiProblem({ status: res.status, title: res.statusText || undefined, ...(body || {}) });
}

/** A fresh Idempotency-Key (128 random bits): one per intended action, made when it starts (ui.js singleFlight). */
export function idempotencyKey() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A write cut off by the network or a gateway is sent again with the same key, so the server does
// its work once; any other failure is the user's to see (docs/security.md, "Double clicks and retries").
const RETRY_DELAYS_MS = [1000, 3000];
const RETRY_STATUSES = new Set([0, 502, 503, 504]);
const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * request("GET", "/v1/chain") → parsed JSON.
 * opts: {json, form, query, raw (return the Response), auth (default true), accept,
 *        idempotencyKey (required for writes), write (default: any method but GET)}
 */
export async function request(method, path, opts = {}) {
  const write = opts.write ?? method !== "GET";
  if (write && !opts.idempotencyKey) throw new TypeError(`${method} ${path} is a write: give it the action's idempotency key`);
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
  if (opts.form !== undefined) body = opts.form;
  if (opts.auth !== false && session.token) headers.Authorization = `Bearer ${session.token}`;
  if (opts.accept) headers.Accept = opts.accept;
  if (opts.idempotencyKey) headers["Idempotency-Key"] = opts.idempotencyKey;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams(Object.entries(opts.query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
    if ([...q].length) url += `?${q}`;
  }
  let res;
  for (let attempt = 0; ; attempt++) {
    try {
      res = await fetch(url, { method, headers, body, credentials: "same-origin" });
    } catch (err) {
      res = new ApiProblem({ status: 0, title: "The server could not be reached", detail: `${err.message}. Check that the Consent Ledger service is running.` });
    }
    const status = res instanceof ApiProblem ? 0 : res.status;
    const retry = write && attempt < RETRY_DELAYS_MS.length && RETRY_STATUSES.has(status);
    if (!retry) break;
    await pause(RETRY_DELAYS_MS[attempt]);
  }
  if (res instanceof ApiProblem) throw res;
  if (!res.ok) {
    const problem = await problemFrom(res);
    if (res.status === 401 && opts.auth !== false && session.token) session.expired(problem);
    throw problem;
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const ct = res.headers.get("content-type") || "";
  return ct.includes("json") ? res.json() : res.text();
}

const enc = encodeURIComponent;
let chainCache = null;

// Writes take the action's idempotency key last (ui.js singleFlight makes one per intended action).
export const api = {
  chain: async (refresh = false) => {
    if (!chainCache || refresh) chainCache = await request("GET", "/v1/chain", { auth: false });
    return chainCache;
  },
  health: () => request("GET", "/health", { auth: false }),
  authNonce: () => request("GET", "/v1/auth/nonce", { auth: false }),
  login: (message, signature, key) => request("POST", "/v1/auth/login", { json: { message, signature }, auth: false, idempotencyKey: key }),
  me: () => request("GET", "/v1/me"),
  // passkey accounts (docs/architecture.md, "Passkey accounts"): the account of a first passkey (deployed by
  // the hub, idempotent), an account's passkeys as the chain has them, and a device added or removed by a
  // message one of its passkeys signed
  createAccount: (publicKey, key) => request("POST", "/v1/accounts", { json: { publicKey }, auth: false, idempotencyKey: key }),
  account: (address) => request("GET", `/v1/accounts/${enc(address)}`, { auth: false }),
  addPasskey: (address, body, key) => request("POST", `/v1/accounts/${enc(address)}/passkeys`, { json: body, idempotencyKey: key }),
  removePasskey: (address, body, key) => request("POST", `/v1/accounts/${enc(address)}/passkeys/remove`, { json: body, idempotencyKey: key }),
  providers: () => request("GET", "/v1/providers"),
  // an unused nonce of the account that signs (the patient, or a guardian acting for them)
  signerNonce: (signer) => request("GET", `/v1/nonces/${enc(signer)}`),
  // encryptionKeyOf(account) on chain: {account, publicKey}
  encryptionKey: (account) => request("GET", `/v1/encryption-keys/${enc(account)}`),
  // any party's signed message (EncryptionKey, AccessRequest, ...): {txHash, blockNumber, ...}
  relay: (primaryType, message, signature, key) => request("POST", "/v1/relay", { json: { primaryType, message, signature }, idempotencyKey: key }),
  // stored ciphertext by CID (a patient: only their own records' versions); the Response, to read as bytes
  blob: (cid) => request("GET", `/v1/blobs/${enc(cid)}`, { raw: true, accept: "application/octet-stream, application/problem+json" }),
  grant: (grant, signature, key) => request("POST", "/v1/consents", { json: { grant, signature }, idempotencyKey: key }),
  revoke: (consentId, revoke, signature, key) => request("POST", `/v1/consents/${enc(consentId)}/revoke`, { json: { revoke, signature }, idempotencyKey: key }),
  consents: (patient) => request("GET", `/v1/patients/${enc(patient)}/consents`),
  records: (patient) => request("GET", `/v1/patients/${enc(patient)}/records`),
  disclosures: (patient) => request("GET", `/v1/patients/${enc(patient)}/disclosures`),
  reviewEmergency: (patient, disclosureId, key) => request("POST", `/v1/patients/${enc(patient)}/emergency-reviews`, { json: { disclosureId }, idempotencyKey: key }),
  // which purposes the caller's consents cover for a record now, and whether it may break the glass
  recordAccess: (id) => request("GET", `/v1/records/${enc(id)}/access`),
  delegates: (patient) => request("GET", `/v1/patients/${enc(patient)}/delegates`),
  addDelegate: (patient, delegate, signature, key) => request("POST", `/v1/patients/${enc(patient)}/delegates`, { json: { delegate, signature }, idempotencyKey: key }),
  createRecordJson: (body, key) => request("POST", "/v1/records", { json: body, idempotencyKey: key }),
  createRecordFile: (form, key) => request("POST", "/v1/records", { form, idempotencyKey: key }),
  amendJson: (id, body, key) => request("POST", `/v1/records/${enc(id)}/versions`, { json: body, idempotencyKey: key }),
  amendFile: (id, form, key) => request("POST", `/v1/records/${enc(id)}/versions`, { form, idempotencyKey: key }),
  // a read logs a disclosure on the ledger: a write like the others
  readRecord: (id, purpose, key) => request("GET", `/v1/records/${enc(id)}`, { query: { purpose }, raw: true, accept: "*/*", write: true, idempotencyKey: key }),
  emergency: (id, reason, key) => request("POST", `/v1/records/${enc(id)}/emergency-access`, { json: { reason }, raw: true, accept: "*/*", idempotencyKey: key }),
  erase: (id, erase, signature, key) => request("DELETE", `/v1/records/${enc(id)}`, { json: { erase, signature }, idempotencyKey: key }),
  removeDelegate: (patient, delegate, revoke, signature, key) => request("DELETE", `/v1/patients/${enc(patient)}/delegates/${enc(delegate)}`, { json: { revoke, signature }, idempotencyKey: key }),
  auditRecord: (id) => request("GET", `/v1/audit/records/${enc(id)}`),
  auditVerify: (patient) => request("POST", "/v1/audit/verify", { json: patient ? { patient } : {}, write: false }),
  // the report's path only: the bearer token goes to this origin, in a header, never in a URL
  auditReport: (reportUrl) => request("GET", new URL(reportUrl, location.origin).pathname, { accept: "text/html" }),
};
