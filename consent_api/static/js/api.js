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

async function problemFrom(res) {
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

/**
 * request("GET", "/v1/chain") → parsed JSON.
 * opts: {json, form, query, raw (return the Response), auth (default true)}
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
  if (opts.form !== undefined) body = opts.form;
  if (opts.auth !== false && session.token) headers.Authorization = `Bearer ${session.token}`;
  if (opts.accept) headers.Accept = opts.accept;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams(Object.entries(opts.query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
    if ([...q].length) url += `?${q}`;
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, credentials: "same-origin" });
  } catch (err) {
    throw new ApiProblem({ status: 0, title: "The server could not be reached", detail: `${err.message}. Check that the Consent Ledger service is running.` });
  }
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

export const api = {
  chain: async (refresh = false) => {
    if (!chainCache || refresh) chainCache = await request("GET", "/v1/chain", { auth: false });
    return chainCache;
  },
  health: () => request("GET", "/health", { auth: false }),
  authNonce: () => request("GET", "/v1/auth/nonce", { auth: false }),
  login: (message, signature) => request("POST", "/v1/auth/login", { json: { message, signature }, auth: false }),
  me: () => request("GET", "/v1/me"),
  providers: () => request("GET", "/v1/providers"),
  consentNonce: (patient) => request("GET", `/v1/consents/nonce/${enc(patient)}`),
  grant: (grant, signature) => request("POST", "/v1/consents", { json: { grant, signature } }),
  revoke: (consentId, revoke, signature) => request("POST", `/v1/consents/${enc(consentId)}/revoke`, { json: { revoke, signature } }),
  consents: (patient) => request("GET", `/v1/patients/${enc(patient)}/consents`),
  records: (patient) => request("GET", `/v1/patients/${enc(patient)}/records`),
  disclosures: (patient) => request("GET", `/v1/patients/${enc(patient)}/disclosures`),
  delegates: (patient) => request("GET", `/v1/patients/${enc(patient)}/delegates`),
  addDelegate: (patient, delegate, signature) => request("POST", `/v1/patients/${enc(patient)}/delegates`, { json: { delegate, signature } }),
  createRecordJson: (body) => request("POST", "/v1/records", { json: body }),
  createRecordFile: (form) => request("POST", "/v1/records", { form }),
  amendJson: (id, body) => request("POST", `/v1/records/${enc(id)}/versions`, { json: body }),
  amendFile: (id, form) => request("POST", `/v1/records/${enc(id)}/versions`, { form }),
  readRecord: (id, purpose) => request("GET", `/v1/records/${enc(id)}`, { query: { purpose }, raw: true, accept: "*/*" }),
  emergency: (id, reason) => request("POST", `/v1/records/${enc(id)}/emergency-access`, { json: { reason }, raw: true, accept: "*/*" }),
  erase: (id) => request("DELETE", `/v1/records/${enc(id)}`),
  auditRecord: (id) => request("GET", `/v1/audit/records/${enc(id)}`),
  auditVerify: (patient) => request("POST", "/v1/audit/verify", { json: patient ? { patient } : {} }),
};
