// Auditor page: verify one record, one patient, or everything; read the report.
import { api } from "../api.js";
import { isAddress, checksum, isBytes32 } from "../signing.js";
import { h, field, choice, setFieldError, announce, clearAlert, showError, hexSpan, timeEl, purposeLabel, shortHex } from "../ui.js";

export async function render(main) {
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
      report.replaceChildren(renderReport(res, label, secs));
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

function renderReport(res, label, secs) {
  const ok = Boolean(res.ok);
  const violations = res.violations || [];
  const parts = [
    h("h2", { tabindex: "-1" }, `Report: ${label}`),
    h("div", { class: `verdict ${ok ? "ok" : "fail"}` }, h("span", { "aria-hidden": "true" }, ok ? "✔" : "✖"),
      ok ? "Verified — no violations found" : `${violations.length} violation${violations.length === 1 ? "" : "s"} found`),
    h("p.muted.small", `Finished in ${secs} s.`),
  ];
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
  if (res.versions && res.versions.length) {
    parts.push(h("h3", "Versions"), h("ol", res.versions.map((v) => h("li", h("span", `Version ${v.version ?? ""} `),
      v.cid ? h("span.mono.small", v.cid) : "", v.ok === false ? h("strong", " — failed") : ""))));
  }
  if (res.disclosures && res.disclosures.length) {
    parts.push(h("h3", "Disclosures"), h("ul", res.disclosures.map((d) => h("li",
      d.emergency ? h("strong", "Emergency: ") : "", `${d.accessorName || shortHex(d.accessor)} · ${purposeLabel(d.purpose)} · `, timeEl(d.timestamp)))));
  }
  if (res.reportUrl) {
    parts.push(h("p", h("a.btn.btn-secondary", { href: res.reportUrl, target: "_blank", rel: "noopener" }, "Open the full HTML report")));
  }
  parts.push(h("details", h("summary", "Raw report (JSON)"), h("pre.json", { tabindex: "0" }, JSON.stringify(res, null, 2))));
  return h("section.card", { "aria-live": "polite" }, ...parts);
}
