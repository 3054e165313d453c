// Small DOM and formatting helpers shared by every page.
import { idempotencyKey } from "./api.js";

/** h("tag.class#id", {attrs}, ...children): build an element (text children are escaped). */
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement((m && m[1]) || "div");
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "required" || k === "multiple") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let uid = 0;
export const nextId = (prefix = "f") => `${prefix}-${++uid}`;

/** A labelled form field; returns {wrap, input, error}. `control` is an element or a tag name. */
export function field(label, control, { hint, id, required } = {}) {
  // GOV.UK pattern: fields are required unless their label says "(optional)"
  const input = typeof control === "string" ? h(control) : control;
  input.id = input.id || id || nextId("fld");
  if (required) input.required = true;
  const described = [];
  const wrap = h("div.field", h("label", { for: input.id }, label), input);
  if (hint) {
    const hid = `${input.id}-hint`;
    wrap.append(h("span.hint", { id: hid }, hint));
    described.push(hid);
  }
  const error = h("div.field-error", { id: `${input.id}-err`, hidden: true });
  wrap.append(error);
  if (described.length) input.setAttribute("aria-describedby", described.join(" "));
  return { wrap, input, error };
}

export function setFieldError(f, message) {
  const ids = new Set((f.input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
  if (message) {
    f.error.textContent = message;
    f.error.hidden = false;
    f.input.setAttribute("aria-invalid", "true");
    ids.add(f.error.id);
  } else {
    f.error.textContent = "";
    f.error.hidden = true;
    f.input.removeAttribute("aria-invalid");
    ids.delete(f.error.id);
  }
  if (ids.size) f.input.setAttribute("aria-describedby", [...ids].join(" "));
  else f.input.removeAttribute("aria-describedby");
}

/** A radio/checkbox choice row. */
export function choice(type, name, value, label, { checked, id } = {}) {
  const input = h("input", { type, name, value, id: id || nextId(name), checked });
  return { row: h("div.choice", input, h("label", { for: input.id }, label)), input };
}

// ---------------------------------------------------------------- announcements

let statusTimer;
let statusShow;
export function announce(message) {
  const el = document.getElementById("status");
  el.textContent = "";
  clearTimeout(statusTimer);
  clearTimeout(statusShow);
  // a fresh text node so screen readers announce repeated messages
  statusShow = setTimeout(() => { el.textContent = message; }, 30);
  statusTimer = setTimeout(() => { el.textContent = ""; }, 12000);
}

export function clearStatus() {
  clearTimeout(statusTimer);
  clearTimeout(statusShow);
  document.getElementById("status").textContent = "";
}

/** Text for screen readers only (a span's aria-label is not read by all of them). */
export const visuallyHidden = (text) => h("span.visually-hidden", text);

/**
 * A message shown next to the action it answers (a banner at the top of the page is off screen on a
 * phone): `tone` "ok" or "error"; `body` is its content. It takes focus, so the next Tab goes on from it.
 */
export function inlineMessage(tone, title, ...body) {
  return h(`div.inline-message.inline-${tone}`, { role: tone === "error" ? "alert" : "status", tabindex: "-1" },
    h("strong.inline-title", title), ...body);
}

/** Put `message` in `slot` (an element placed beside the action), replacing what was there, and focus it. */
export function placeMessage(slot, message) {
  slot.replaceChildren(message);
  slot.hidden = false;
  message.focus({ preventScroll: true });
  message.scrollIntoView({ block: "nearest" });
}

export function clearAlert() {
  const el = document.getElementById("alert");
  el.hidden = true;
  el.replaceChildren();
}

/** Show an error (an ApiProblem or any Error) in the page's alert region. */
export function showError(err) {
  console.warn(err);
  const el = document.getElementById("alert");
  const title = err && err.title ? err.title : "Something went wrong";
  let detail = err && err.detail !== undefined ? err.detail : (err && err.message) || String(err);
  if (err && err.status) detail = `${detail}${detail ? " " : ""}(HTTP ${err.status})`;
  const close = h("button.btn.btn-quiet.btn-small", { type: "button", "aria-label": "Dismiss error" }, "Dismiss");
  close.addEventListener("click", clearAlert);
  el.replaceChildren(h("div", h("strong.problem-title", title), h("p.detail.problem-detail", detail)), close);
  el.hidden = false;
  el.scrollIntoView({ block: "nearest" });
}

/** An error's title and detail on one line, for an error shown beside the control that failed. */
export function problemText(err) {
  const title = (err && err.title) || "Refused";
  const detail = (err && (err.detail || err.message)) || "";
  return `${title}${detail ? `: ${detail}` : ""}${err && err.status ? ` (HTTP ${err.status})` : ""}`;
}

const inFlight = new WeakSet();

/**
 * Run one intended action from `button`, once: a second click or Enter while it runs does nothing.
 * The button is disabled and relabelled (`label`, e.g. "Reading…") and a progress note appears beside
 * it until the action ends. `fn(flight)` gets `flight.key`, the action's Idempotency-Key, made here
 * when the action starts (api.js reuses it only for its automatic retries of the same request), and
 * `flight.step(label)` to relabel the button between steps. Resolves with fn's result, or undefined
 * after an error, which goes to `onError` (default: the page's alert).
 */
export async function singleFlight(button, label, fn, { note = "Waiting for the ledger…", onError = showError } = {}) {
  if (inFlight.has(button)) return undefined;
  inFlight.add(button);
  if (onError === showError) { clearAlert(); clearStatus(); }
  const saved = [...button.childNodes];
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = label;
  const elapsed = h("span.flight-elapsed", { "aria-hidden": "true" });
  const progress = h("span.flight", { role: "status" }, h("span.spinner", { "aria-hidden": "true" }), h("span", note), elapsed);
  button.after(progress);
  const started = Date.now();
  const timer = setInterval(() => { elapsed.textContent = `${Math.round((Date.now() - started) / 1000)} s`; }, 1000);
  const flight = { key: idempotencyKey(), step: (text) => { button.textContent = text; } };
  try {
    return await fn(flight);
  } catch (err) {
    onError(err);
    return undefined;
  } finally {
    clearInterval(timer);
    progress.remove();
    button.replaceChildren(...saved);
    button.removeAttribute("aria-busy");
    button.disabled = wasDisabled;
    inFlight.delete(button);
  }
}

// ---------------------------------------------------------------- dialogs

/**
 * A modal dialog; resolves with the value of the pressed button (or null on cancel/Esc).
 * `confirm` buttons can be gated by `canConfirm()`. `onConfirm(flight)` runs as a singleFlight of the
 * confirm button (relabelled `busyLabel`): resolve undefined to keep the dialog open; what it throws
 * is shown in the dialog. Cancel and Esc wait until it ends, so an action cannot be left half seen.
 */
export function modal({ title, tone, content, confirmLabel = "Confirm", confirmClass = "btn", cancelLabel = "Cancel", busyLabel = "Working…", busyNote, canConfirm, onConfirm }) {
  const dialog = document.getElementById("dialog");
  dialog.className = tone || "";
  const titleEl = h("h2#dialog-title", title);
  const cancel = h("button.btn.btn-secondary", { type: "button", value: "cancel" }, cancelLabel);
  const ok = h(`button.${confirmClass.split(" ").join(".")}`, { type: "submit", value: "ok" }, confirmLabel);
  const failure = h("p.field-error.dialog-error", { role: "alert" });
  const form = h("form.dialog-body", { method: "dialog" }, titleEl, content, failure, h("div.actions", ok, cancel));
  dialog.replaceChildren(form);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    let done = false;
    let running = false;
    const onCancel = (e) => { e.preventDefault(); if (!running) finish(null); };
    const finish = (value) => {
      if (done) return;
      done = true;
      dialog.removeEventListener("cancel", onCancel); // the dialog element serves every modal
      if (dialog.open) dialog.close();
      if (opener && opener.focus && document.contains(opener)) opener.focus();
      resolve(value);
    };
    cancel.addEventListener("click", () => { if (!running) finish(null); });
    dialog.addEventListener("cancel", onCancel);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (running) return;
      if (canConfirm && !canConfirm()) return;
      let value = true;
      if (onConfirm) {
        running = true;
        cancel.disabled = true;
        failure.textContent = "";
        value = await singleFlight(ok, busyLabel, onConfirm, { note: busyNote, onError: (err) => { failure.textContent = problemText(err); } });
        running = false;
        cancel.disabled = false;
        if (value === undefined) return; // keep the dialog open
      }
      finish(value);
    });
    dialog.showModal();
    // focus the first field, or the safe (cancel) button for destructive confirmations
    const first = form.querySelector("input, textarea, select");
    (first || cancel).focus();
  });
}

// ---------------------------------------------------------------- formatting

export const PURPOSE_LABELS = {
  TREAT: "Treatment",
  ETREAT: "Emergency treatment",
  HPAYMT: "Healthcare payment",
  HOPERAT: "Healthcare operations",
  HRESCH: "Healthcare research",
  PATRQT: "Patient requested",
  PUBHLTH: "Public health",
};
export const CATEGORY_LABELS = {
  laboratory: "Laboratory",
  imaging: "Imaging",
  medication: "Medication",
  "clinical-note": "Clinical note",
  "vital-signs": "Vital signs",
};
// A purpose as a patient reads it in a sentence ("… may read your records for research"), with no code.
export const PURPOSE_WORDS = {
  TREAT: "treatment",
  ETREAT: "emergency treatment",
  HPAYMT: "payment for your care",
  HOPERAT: "running their services",
  HRESCH: "research",
  PATRQT: "your own request",
  PUBHLTH: "public health",
};
export const purposeWords = (code) => PURPOSE_WORDS[code] || (PURPOSE_LABELS[code] || code || "").toLowerCase();
/** A purpose's name without its code, for the patient's pages (purposeLabel adds the code for providers). */
export const purposeName = (code) => PURPOSE_LABELS[code] || code || "—";
export const purposeLabel = (code) => (PURPOSE_LABELS[code] ? `${PURPOSE_LABELS[code]} (${code})` : code || "—");
export const categoryLabel = (code) => CATEGORY_LABELS[code] || code || "—";

export function shortHex(hex, head = 6, tail = 4) {
  if (!hex || typeof hex !== "string") return "—";
  return hex.length <= head + tail + 2 ? hex : `${hex.slice(0, head)}…${hex.slice(-tail)}`;
}
/** A hex value shown short but with the full value available to assistive tech and on hover. */
export function hexSpan(hex, head, tail) {
  if (!hex) return h("span.mono", "—");
  const short = shortHex(hex, head, tail);
  if (short === hex) return h("span.mono", hex);
  return h("span.mono", { title: hex }, h("span", { "aria-hidden": "true" }, short), visuallyHidden(hex));
}

/** Put `text` on the clipboard; false where the browser refuses (no permission, no secure context). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * An address shown short (the full one on hover and to assistive tech) with a Copy button; where the
 * clipboard is refused, the full address appears selected, to copy by hand.
 */
export function addressWithCopy(address) {
  const shown = hexSpan(address);
  const copy = h("button.btn.btn-quiet.btn-small.copy-button", { type: "button", "aria-label": `Copy the address ${address}` }, "Copy");
  copy.addEventListener("click", async () => {
    if (await copyText(address)) { announce("Address copied."); return; }
    const full = h("input.mono.address-full", { type: "text", readonly: true, value: address, "aria-label": "Address" });
    shown.replaceWith(full);
    full.select();
  });
  return h("span.address-copy", shown, copy);
}

export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
  const n = Number(value);
  if (!Number.isNaN(n) && String(value).trim() !== "") return new Date(n < 1e12 ? n * 1000 : n);
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}
export function fmtDate(value, { time = true } = {}) {
  const d = toDate(value);
  if (!d) return "—";
  return d.toLocaleString(undefined, time
    ? { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
    : { year: "numeric", month: "short", day: "numeric" });
}
export function timeEl(value, opts) {
  const d = toDate(value);
  return d ? h("time", { datetime: d.toISOString() }, fmtDate(d, opts)) : "—";
}
export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}
export function pill(kind, text) {
  return h(`span.pill.pill-${kind}`, text || kind);
}
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p.empty", empty);
  const thead = h("thead", h("tr", columns.map((c) => h("th", { scope: "col" }, c.label))));
  const tbody = h("tbody", rows.map((r) => h("tr", columns.map((c) => {
    const td = h("td", { "data-label": c.label }, c.cell(r));
    if (c.actions) td.classList.add("actions-cell");
    return td;
  }))));
  return h("div.table-wrap", h("table.stack", caption ? h("caption", caption) : null, thead, tbody));
}
