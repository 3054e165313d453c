// A FHIR R4 resource as a summary people can read (docs/architecture.md, "Record titles"): what it is, its
// value and unit, its date and what it means, with the raw JSON one click away. Record content is the
// provider's, not this site's: everything here is built from text nodes (ui.js's h), never as HTML.
import { h, fmtDate } from "./ui.js";

const INTERPRETATIONS = {
  N: "Normal", A: "Abnormal", AA: "Critically abnormal", H: "High", HH: "Critically high", L: "Low", LL: "Critically low",
  POS: "Positive", NEG: "Negative", IND: "Indeterminate", HU: "Significantly high", LU: "Significantly low",
};

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const text = (v) => (typeof v === "string" ? v.trim() : "");

/** A CodeableConcept in words: its text, else its first coding's display, else its code. */
export function conceptText(concept) {
  if (!concept || typeof concept !== "object") return "";
  if (text(concept.text)) return text(concept.text);
  const codings = Array.isArray(concept.coding) ? concept.coding : [];
  for (const c of codings) if (c && text(c.display)) return text(c.display);
  for (const c of codings) if (c && text(c.code)) return INTERPRETATIONS[c.code] || text(c.code);
  return "";
}

function quantity(q) {
  if (!q || typeof q !== "object" || q.value === undefined || q.value === null) return "";
  const unit = text(q.unit) || text(q.code);
  return `${q.comparator || ""}${q.value}${unit ? ` ${unit}` : ""}`;
}

/** The value of an Observation (or one of its components) in words. */
function valueOf(o) {
  if (!o || typeof o !== "object") return "";
  if (o.valueQuantity) return quantity(o.valueQuantity);
  if (o.valueCodeableConcept) return conceptText(o.valueCodeableConcept);
  if (typeof o.valueString === "string") return o.valueString;
  if (typeof o.valueBoolean === "boolean") return o.valueBoolean ? "Yes" : "No";
  if (typeof o.valueInteger === "number") return String(o.valueInteger);
  if (o.valueRange) return [quantity(o.valueRange.low), quantity(o.valueRange.high)].filter(Boolean).join(" to ");
  if (typeof o.valueDateTime === "string") return when(o.valueDateTime);
  return "";
}

function when(value) {
  if (typeof value !== "string" || !value) return "";
  // A date alone (no time) is shown as that day, whatever the time zone.
  if (/^\d{4}(-\d{2}(-\d{2})?)?$/.test(value)) {
    const [y, m, d] = value.split("-").map(Number);
    if (!m || m > 12) return String(y);
    return `${d ? `${d} ` : ""}${MONTHS[m - 1]} ${y}`;
  }
  const t = Date.parse(value);
  return Number.isNaN(t) ? value : fmtDate(Math.floor(t / 1000));
}

function firstDate(r, names) {
  for (const n of names) {
    const v = r[n];
    if (typeof v === "string" && v) return when(v);
    if (v && typeof v === "object" && typeof v.start === "string") return when(v.start) + (typeof v.end === "string" ? ` to ${when(v.end)}` : "");
  }
  return "";
}

function interpretation(list) {
  return (Array.isArray(list) ? list : []).map(conceptText).filter(Boolean).join(", ");
}

function range(list) {
  const r = Array.isArray(list) ? list[0] : null;
  if (!r) return "";
  if (text(r.text)) return text(r.text);
  return [quantity(r.low), quantity(r.high)].filter(Boolean).join(" to ");
}

const listText = (items, fn) => (Array.isArray(items) ? items.map(fn).filter(Boolean).join("; ") : "");
const statusText = (s) => (typeof s === "string" && s ? s.charAt(0).toUpperCase() + s.slice(1).replace(/-/g, " ") : "");

/**
 * {kind, name, rows: [[label, value]]} of a FHIR resource: the fields that matter for its type, in words.
 * Rows without a value are left out.
 */
export function fhirSummary(r) {
  const kind = r && typeof r.resourceType === "string" ? r.resourceType : "Resource";
  let name = "";
  let rows = [];
  if (kind === "Observation") {
    name = conceptText(r.code);
    const parts = Array.isArray(r.component) ? r.component : [];
    rows = [
      ["Result", valueOf(r)],
      ...parts.map((c) => [conceptText(c.code) || "Part", valueOf(c)]),
      ["Interpretation", interpretation(r.interpretation) || listText(parts, (c) => interpretation(c.interpretation))],
      ["Normal range", range(r.referenceRange)],
      ["Date", firstDate(r, ["effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"])],
      ["Status", statusText(r.status)],
      ["Note", listText(r.note, (n) => text(n && n.text))],
    ];
  } else if (kind === "DiagnosticReport") {
    name = conceptText(r.code);
    rows = [
      ["Conclusion", text(r.conclusion) || listText(r.conclusionCode, conceptText)],
      ["Results", listText(r.result, (x) => text(x && x.display))],
      ["Date", firstDate(r, ["effectiveDateTime", "effectivePeriod", "issued"])],
      ["Status", statusText(r.status)],
    ];
  } else if (kind === "MedicationStatement" || kind === "MedicationRequest") {
    name = conceptText(r.medicationCodeableConcept) || text(r.medicationReference && r.medicationReference.display);
    rows = [
      ["Dose", listText(r.dosage || r.dosageInstruction, (d) => text(d && d.text))],
      ["Reason", listText(r.reasonCode, conceptText)],
      ["Taken", firstDate(r, ["effectiveDateTime", "effectivePeriod", "authoredOn", "dateAsserted"])],
      ["Status", statusText(r.status)],
      ["Note", listText(r.note, (n) => text(n && n.text))],
    ];
  } else if (kind === "DocumentReference") {
    name = text(r.description) || conceptText(r.type);
    rows = [
      ["Type", conceptText(r.type)],
      ["Kind", listText(r.category, conceptText)],
      ["Attached", listText(r.content, (c) => c && c.attachment ? [text(c.attachment.title), text(c.attachment.contentType)].filter(Boolean).join(", ") : "")],
      ["Date", firstDate(r, ["date"])],
      ["Status", statusText(r.docStatus || r.status)],
    ];
  } else if (kind === "Condition") {
    name = conceptText(r.code);
    rows = [
      ["Clinical status", conceptText(r.clinicalStatus)],
      ["Verification", conceptText(r.verificationStatus)],
      ["Severity", conceptText(r.severity)],
      ["Body site", listText(r.bodySite, conceptText)],
      ["Since", firstDate(r, ["onsetDateTime", "onsetPeriod"]) || text(r.onsetString)],
      ["Recorded", firstDate(r, ["recordedDate"])],
      ["Note", listText(r.note, (n) => text(n && n.text))],
    ];
  } else {
    name = conceptText(r && r.code) || conceptText(r && r.type);
    rows = [["Date", firstDate(r || {}, ["effectiveDateTime", "date", "issued", "recordedDate", "authoredOn"])], ["Status", statusText(r && r.status)]];
  }
  const kindWords = kind.replace(/([a-z])([A-Z])/g, "$1 $2");
  return { kind: kindWords, name: name || kindWords, rows: rows.filter(([, v]) => v) };
}

/**
 * The summary of a FHIR document (its text) with the raw JSON in a collapsed section; a document that is
 * not JSON is shown as text only.
 */
export function fhirView(rawText, { idPrefix = "fhir" } = {}) {
  let resource = null;
  let pretty = rawText;
  try {
    resource = JSON.parse(rawText);
    pretty = JSON.stringify(resource, null, 2);
  } catch { /* shown as stored */ }
  const raw = h("details.fhir-raw", h("summary", "Show raw JSON"), h("pre.json", { tabindex: "0" }, pretty));
  if (!resource || typeof resource !== "object" || Array.isArray(resource)) return h("div.fhir-view", raw);
  const s = fhirSummary(resource);
  const heading = h(`h3#${idPrefix}-name.fhir-name`, s.name);
  return h("div.fhir-view", { role: "group", "aria-labelledby": `${idPrefix}-name` },
    heading,
    s.name !== s.kind ? h("p.muted.small.fhir-kind", s.kind) : null,
    s.rows.length ? h("dl.kv.fhir-summary", s.rows.map(([k, v]) => [h("dt", k), h("dd", v)])) : h("p.muted", "No summary for this kind of record; see the raw JSON."),
    raw);
}
