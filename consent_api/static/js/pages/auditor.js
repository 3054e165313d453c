// Auditor page: verify one record, one patient, or everything; read the report.
import { api } from "../api.js";
import { isAddress, checksum, isBytes32 } from "../signing.js";
import { h, field, choice, setFieldError, announce, clearAlert, showError, hexSpan, timeEl, purposeLabel, shortHex, pill, singleFlight } from "../ui.js";

export async function render(main) {
  const names = {};
  try {
    for (const x of (await api.providers()).providers || []) names[x.address.toLowerCase()] = x.name;
  } catch { /* addresses are shown without names */ }
  const sRecord = choice("radio", "target", "record", "One record");
  const sPatient = choice("radio", "target", "patient", "One patient", { checked: true });
  const sAll = choice("radio", "target", "all", "Everything on the ledger");
  const rec = field("Record id", h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "0x… (64 hex characters)" }));
  const pat = field("Patient address", h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "0x…" }));
  const sync = () => { rec.wrap.hidden = !sRecord.input.checked; pat.wrap.hidden = !sPatient.input.checked; };
  for (const s of [sRecord, sPatient, sAll]) s.input.addEventListener("change", sync);
  sync();
  const submit = h("button.btn", { type: "submit" }, "Verify");
  const progress = h("div#verify-progress", { hidden: true },
    h("label", { for: "verify-bar" }, "Verifying the hash trail and disclosures on the ledger…"),
    h("progress#verify-bar", { "aria-describedby": "verify-note" }),
    h("p.muted.small#verify-note", "Every record version and disclosure is re-checked against the chain. Large ledgers take a while."));
  const report = h("div#report");
  const form = h("form#verify-form", { novalidate: true },
    h("fieldset", h("legend", "What to verify"), sRecord.row, sPatient.row, sAll.row), rec.wrap, pat.wrap, h("div.actions", submit));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let run;
    let label;
    if (sRecord.input.checked) {
      const v = rec.input.value.trim();
      if (!isBytes32(v)) { setFieldError(rec, "A record id is 0x followed by 64 hex characters."); rec.input.focus(); return; }
      setFieldError(rec, "");
      run = () => api.auditRecord(v); label = `record ${shortHex(v)}`;
    } else if (sPatient.input.checked) {
      const v = pat.input.value.trim();
      if (!isAddress(v)) { setFieldError(pat, "Enter a valid address (0x followed by 40 hex characters)."); pat.input.focus(); return; }
      setFieldError(pat, "");
      run = () => api.auditVerify(checksum(v)); label = `patient ${shortHex(v)}`;
    } else {
      run = () => api.auditVerify(null); label = "the whole ledger";
    }
    clearAlert();
    report.replaceChildren();
    progress.hidden = false;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    announce(`Verifying ${label}…`);
    const started = performance.now();
    try {
      const res = await run();
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      report.replaceChildren(renderReport(res, label, secs, names));
      announce(`Verification of ${label} finished: ${res.ok ? "no violations" : `${(res.violations || []).length} violation(s)`}.`);
      report.querySelector("h2").focus();
    } catch (err) {
      showError(err);
    } finally {
      progress.hidden = true;
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  main.replaceChildren(h("h1", "Verify the ledger"),
    h("p.muted", "Checks, without trusting the operator, that every record version is intact and every disclosure was allowed."),
    h("section.card", { "aria-labelledby": "v-h" }, h("h2#v-h", "Verification"), form, progress),
    report);
}

const humanKey = (k) => k.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/^./, (c) => c.toUpperCase());

function renderReport(res, label, secs, names) {
  const ok = Boolean(res.ok);
  const violations = res.violations || [];
  const who = (addr) => (addr && names[addr.toLowerCase()] ? h("span", names[addr.toLowerCase()], " ", hexSpan(addr)) : hexSpan(addr));
  // erased records in scope: the patient or ledger report's `erasures`, a record trail's `erasure`
  const erased = new Map((res.erasures || []).map((e) => [e.recordId.toLowerCase(), e]));
  if (res.erasure && res.recordId) erased.set(res.recordId.toLowerCase(), res.erasure);
  const erasedMark = (id) => (id && erased.has(id.toLowerCase()) ? [" ", pill("erased", "Erased")] : "");
  const parts = [
    h("h2", { tabindex: "-1" }, `Report: ${label}`, res.erasure ? [" ", pill("erased", "Erased")] : ""),
    h("div", { class: `verdict ${ok ? "ok" : "fail"}` }, h("span", { "aria-hidden": "true" }, ok ? "✔" : "✖"),
      ok ? "Verified — no violations found" : `${violations.length} violation${violations.length === 1 ? "" : "s"} found`),
    h("p.muted.small", `Finished in ${secs} s.`),
  ];
  if (res.erasure) {
    parts.push(h("p", `This record was erased in block ${res.erasure.blockNumber}`,
      res.erasure.txHash ? [", transaction ", hexSpan(res.erasure.txHash, 10, 6)] : "", ". Its content can no longer be read; its history stays on the ledger."));
  }
  const summary = res.summary || {};
  const counts = Object.entries(summary).filter(([, v]) => typeof v === "number" || typeof v === "string");
  if (res.versions) counts.push(["versions", res.versions.length]);
  if (res.disclosures) counts.push(["disclosures", res.disclosures.length]);
  if (counts.length) {
    parts.push(h("h3", "Summary"), h("div.summary", counts.map(([k, v]) => h("div", h("span.n", String(v)), h("span.k", humanKey(k))))));
  }
  parts.push(h("h3", "Violations"));
  if (!violations.length) parts.push(h("p.empty", "None."));
  else {
    parts.push(h("ol.violations", violations.map((v) => h("li",
      h("strong", v.code || "violation"), ": ", v.message || "",
      h("div.small.muted",
        v.recordId ? ["record ", hexSpan(v.recordId, 10, 6), " "] : "",
        v.block !== undefined && v.block !== null ? `block ${v.block} ` : "",
        v.txHash ? ["tx ", hexSpan(v.txHash, 10, 6)] : "")))));
  }
  const glass = res.emergencies || [];
  parts.push(h("h3#glass-h", `Break-glass accesses (${glass.length})`));
  if (!glass.length) parts.push(h("p.empty", "None."));
  else {
    const entry = (e) => h("li",
      h("div", h("span.emergency-flag", h("span", { "aria-hidden": "true" }, "⚠"), "Emergency access"), " ",
        who(e.accessor), " read record ", hexSpan(e.recordId, 10, 6), erasedMark(e.recordId)),
      h("dl.kv",
        h("dt", "When"), h("dd", timeEl(e.timestamp)),
        h("dt", "Reason given"), h("dd", e.reason ? h("strong", e.reason)
          : h("span.muted", "not held by this operator (its hash is on the ledger: ", hexSpan(e.reasonHash), ")")),
        h("dt", "Accessor"), h("dd.mono", e.accessor || "—"),
        h("dt", "Emergency role"), h("dd", e.authorized ? "held at the time" : h("strong", "NOT held at the time")),
        h("dt", "Ledger"), h("dd", `block ${e.block}`, e.tx ? [", transaction ", hexSpan(e.tx, 10, 6)] : "")));
    parts.push(h("ol.glass-list", { "aria-labelledby": "glass-h" }, glass.map(entry)));
  }
  if (res.erasures) {
    parts.push(h("h3#erased-h", `Erased records (${res.erasures.length})`));
    if (!res.erasures.length) parts.push(h("p.empty", "None."));
    else {
      parts.push(h("ul.erased-list", { "aria-labelledby": "erased-h" }, res.erasures.map((e) => h("li",
        hexSpan(e.recordId, 10, 6), " ", pill("erased", "Erased"), " ", timeEl(e.timestamp),
        ` · block ${e.blockNumber}`, e.txHash ? [", transaction ", hexSpan(e.txHash, 10, 6)] : ""))));
    }
  }
  if (res.versions && res.versions.length) {
    parts.push(h("h3", "Versions"), h("ol", res.versions.map((v) => h("li", h("span", `Version ${v.version ?? ""} `),
      v.cid ? h("span.mono.small", v.cid) : "", v.ok === false ? h("strong", " — failed") : ""))));
  }
  if (res.disclosures && res.disclosures.length) {
    parts.push(h("h3", "Disclosures"), h("ul", res.disclosures.map((d) => h("li",
      d.emergency ? h("strong", "Emergency: ") : "", `${d.accessorName || shortHex(d.accessor)} · ${purposeLabel(d.purpose)} · `, timeEl(d.timestamp)))));
  }
  if (res.reportUrl) {
    const open = h("button.btn.btn-secondary", { type: "button" }, "Open the full HTML report");
    open.addEventListener("click", () => openReport(open, res.reportUrl));
    parts.push(h("div.actions", open));
  }
  parts.push(h("details", h("summary", "Raw report (JSON)"), h("pre.json", { tabindex: "0" }, JSON.stringify(res, null, 2))));
  return h("section.card", { "aria-live": "polite" }, ...parts);
}

/**
 * The HTML report needs the auditor's bearer token, which a plain link cannot send: fetch it with the
 * token (in a header, never in a URL) and show it from a blob: URL in a new tab. The tab is opened in
 * the click itself, so no popup blocker stops it; the blob document inherits the portal's policy,
 * which allows the report's one stylesheet by its hash and no script.
 */
async function openReport(button, reportUrl) {
  clearAlert();
  const tab = window.open("", "_blank");
  if (tab) {
    tab.document.title = "Loading the verification report…";
    tab.document.body.textContent = "Loading the verification report…";
  }
  const html = await singleFlight(button, "Opening the report…", () => api.auditReport(reportUrl), {
    note: "Fetching the report…",
    onError: showError,
  });
  if (html === undefined) { // failed (shown in the page) or already opening
    if (tab) tab.close();
    return;
  }
  const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  if (tab && !tab.closed) {
    tab.opener = null;
    tab.location.replace(url);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return;
  }
  // the browser kept the tab from opening: offer the fetched report as a link
  button.after(h("a.btn.btn-quiet", { href: url, target: "_blank", rel: "noopener" }, "Show the fetched report"));
}
