// Provider pages: find a patient and read records for a purpose (or break the glass), upload, amend.
import { api, request } from "../api.js";
import { session } from "../session.js";
import { findPatientCard, patientCard } from "../provider_directory.js";
import { checksum, isAddress } from "../signing.js";
import { fhirView } from "../fhir_view.js";
import { dispositionName } from "../record_labels.js";
import {
  h, field, choice, setFieldError, singleFlight, announce, modal, table, pill, hexSpan, timeEl, fmtBytes,
  purposeLabel, categoryLabel, PURPOSE_LABELS, shortHex, clearAlert, placeMessage,
} from "../ui.js";
import { refusalHelp } from "../refusal_help.js";

export async function render(main, ctx) {
  if (ctx.section === "upload") return upload(main, ctx);
  if (ctx.section !== "patients") { location.replace("#/provider/patients"); return; }
  return patients(main, ctx);
}

function purposeSelect(chain, id) {
  const codes = (chain.purposes || Object.keys(PURPOSE_LABELS)).filter((c) => c !== "ETREAT");
  return h("select", { id, name: "purpose" }, codes.map((c) => h("option", { value: c, selected: c === "TREAT" }, purposeLabel(c))));
}

async function iAmEmergency() {
  try {
    const { providers } = await api.providers();
    const me = providers.find((x) => x.address.toLowerCase() === session.address.toLowerCase());
    return { emergency: Boolean(me && me.emergency), name: me ? me.name : null };
  } catch { return { emergency: false, name: null }; }
}

// ---------------------------------------------------------------- find a patient, read

async function patients(main, { chain, params }) {
  const given = params.get("patient");
  const patient = given && isAddress(given) ? checksum(given) : null;
  const open = (address) => {
    const target = `#/provider/patients?patient=${address}`;
    if (location.hash === target) patients(main, { chain, params: new URLSearchParams(`patient=${address}`) });
    else location.hash = target;
  };
  const me = await iAmEmergency();
  const recordsBox = h("div");
  const reader = readerCard(chain, me);
  const finder = await findPatientCard(open, { another: Boolean(patient) });
  // the records are titled by the patient's name once the directory has one
  const whose = (entry) => ["Records of ", entry ? entry.name : h("span.mono", shortHex(patient, 8, 6))];
  const recordsTitle = h("h2#prec-h");
  const shown = patient ? await patientCard(patient, (entry) => { recordsTitle.replaceChildren(...whose(entry)); }) : null;
  if (shown) recordsTitle.replaceChildren(...whose(shown.entry));
  main.replaceChildren(...[
    h("h1", "Find a patient"),
    me.name ? h("p.muted", `Signed in as ${me.name}.`) : null,
    given && !patient ? h("p.warning-box", "That link does not hold a valid patient ID (0x followed by 40 hex characters). Ask the patient to share it again.") : null,
    // a patient shown comes first, with their records and the reader; the search, to find another, after
    ...(shown ? [shown.card, recordsBox, reader.card, finder] : [finder, recordsBox, reader.card])].filter(Boolean));
  if (!patient) return;
  const { records } = await api.records(patient);
  const cols = [
    // the title when this organisation holds it (its own records, those it has read: docs/architecture.md, "Record titles")
    { label: "Record", cell: (r) => (r.title ? [h("span.record-title", r.title), h("br"), h("span.muted.small", hexSpan(r.recordId, 10, 6))] : hexSpan(r.recordId, 10, 6)) },
    { label: "Category", cell: (r) => categoryLabel(r.category) },
    { label: "Type", cell: (r) => h("span", r.mediaType || "—", r.size !== undefined ? h("span.muted.small", ` · ${fmtBytes(r.size)}`) : null) },
    { label: "Version", cell: (r) => String(r.version ?? "—") },
    { label: "Author", cell: (r) => r.authorName || hexSpan(r.author) },
    { label: "Added", cell: (r) => timeEl(r.createdAt) },
    {
      label: "Actions", actions: true, cell: (r) => {
        if (r.erased) return pill("erased", "Erased");
        const read = h("button.btn.btn-small", { type: "button" }, "Read…");
        read.setAttribute("aria-label", `Read record ${shortHex(r.recordId)}`);
        read.addEventListener("click", () => reader.open(r));
        const out = [read];
        if (r.author && r.author.toLowerCase() === session.address.toLowerCase()) {
          const amend = h("button.btn.btn-secondary.btn-small", { type: "button" }, "Amend…");
          amend.setAttribute("aria-label", `Amend record ${shortHex(r.recordId)} (new version)`);
          amend.addEventListener("click", () => amendRecord(r, () => patients(main, { chain, params })));
          out.push(amend);
        }
        return out;
      },
    },
  ];
  recordsBox.replaceChildren(h("section.card", { "aria-labelledby": "prec-h" },
    recordsTitle,
    h("p.muted.small", "Records you authored or may read. Reading needs the patient's consent for your purpose, and is logged on the ledger."),
    table(cols, records || [], { empty: "No records of this patient are visible to you." })));
}

function readerCard(chain, me) {
  const idInput = h("input", { type: "text", name: "recordId", autocomplete: "off", spellcheck: "false", placeholder: "0x… (64 hex characters)" });
  const fId = field("Record id", idInput, { required: true });
  const fPurpose = field("Purpose of use", purposeSelect(chain), { required: true, hint: "Stated on the ledger with this read." });
  const submit = h("button.btn", { type: "submit" }, "Read record");
  const glass = h("button.btn.btn-danger-outline", { type: "button" }, "Emergency access…");
  const result = h("div#read-result", { "aria-live": "polite" });
  const form = h("form#read-form", { novalidate: true }, fId.wrap, fPurpose.wrap, h("div.actions", submit, me.emergency ? glass : null));
  const card = h("section.card#reader", { "aria-labelledby": "read-h" }, h("h2#read-h", "Read a record"), form, result);
  const validId = () => {
    const ok = /^0x[0-9a-fA-F]{64}$/.test(idInput.value.trim());
    setFieldError(fId, ok ? "" : "A record id is 0x followed by 64 hex characters.");
    if (!ok) idInput.focus();
    return ok;
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!validId()) return;
    const id = idInput.value.trim();
    result.replaceChildren();
    const purpose = fPurpose.input.value;
    singleFlight(submit, "Reading…", async (flight) => {
      const res = await api.readRecord(id, purpose, flight.key);
      const name = await showContent(result, id, res, false);
      announce(`${name || `Record ${shortHex(id)}`} read for ${PURPOSE_LABELS[purpose]}; the disclosure was logged on the ledger.`);
    }, {
      note: "Checking consent and logging the disclosure on the ledger…",
      // a refusal is shown here, beside the form, with its next steps (refusal_help.js)
      onError: async (err) => placeMessage(result, await refusalHelp(err, {
        recordId: id,
        purpose,
        choosePurpose: (code) => { fPurpose.input.value = code; fPurpose.input.focus(); },
        breakGlass: me.emergency ? glass : null,
      })),
    });
  });
  glass.addEventListener("click", async () => {
    if (!validId()) return;
    const id = idInput.value.trim();
    const reason = field("Reason for emergency access", h("textarea", { rows: "3" }), { required: true, hint: "Shown to the patient and auditors. At least 10 characters." });
    reason.input.classList.add("prose");
    const confirm = choice("checkbox", "confirmEmergency", "1", "I confirm this is an emergency and the patient cannot give consent in time.");
    const err = h("p.field-error", { role: "alert" });
    confirm.input.addEventListener("change", () => { if (confirm.input.checked) err.textContent = ""; });
    let response = null;
    const ok = await modal({
      title: "Emergency access (break the glass)",
      tone: "emergency",
      content: h("div",
        h("p.warning-box", h("strong", "This bypasses the patient's consent. "), "The access is logged permanently on the ledger, flagged as an emergency, and shown to the patient and to auditors with your reason."),
        h("dl.kv", h("dt", "Record"), h("dd.mono", id)),
        reason.wrap, confirm.row, err),
      confirmLabel: "Break the glass and read",
      confirmClass: "btn btn-danger",
      cancelLabel: "Cancel",
      busyLabel: "Reading…",
      busyNote: "Logging the emergency access on the ledger…",
      onConfirm: async (flight) => {
        const text = reason.input.value.trim();
        if (text.length < 10) { setFieldError(reason, "Give a reason of at least 10 characters."); reason.input.focus(); return undefined; }
        setFieldError(reason, "");
        if (!confirm.input.checked) { err.textContent = "Tick the confirmation to continue."; confirm.input.focus(); return undefined; }
        response = await api.emergency(id, text, flight.key);
        return true;
      },
    });
    if (!ok || !response) return;
    clearAlert();
    await showContent(result, id, response, true);
    announce(`Emergency access to record ${shortHex(id)} was logged and flagged.`);
  });
  return {
    card,
    open(r) {
      idInput.value = r.recordId;
      result.replaceChildren();
      card.scrollIntoView({ block: "start" });
      fPurpose.input.focus();
    },
  };
}

/** Show a released record: a FHIR summary (raw JSON one click away) or the file under its original name.
 * Resolves to the name the record is shown by (its file name from the response, when the node gave one). */
async function showContent(box, id, res, emergency) {
  const ct = (res.headers.get("content-type") || "application/octet-stream").split(";")[0].trim();
  const name = dispositionName(res.headers.get("content-disposition"));
  const given = name && !/^record-[0-9a-f]{64}-v\d+/i.test(name) ? name : "";
  // The proof of the read, for whoever checks it: collapsed below the content.
  const proof = h("details.ledger-proof", h("summary", "Ledger details"), h("dl.kv",
    h("dt", "Record"), h("dd.mono", id),
    h("dt", "Version"), h("dd", res.headers.get("x-record-version") || "—"),
    h("dt", "Content id (CID)"), h("dd.mono", res.headers.get("x-record-cid") || "—"),
    h("dt", "Disclosure logged in"), h("dd.mono", res.headers.get("x-disclosure-tx") || "—"),
    h("dt", "Media type"), h("dd", ct)));
  const parts = [h("h3", emergency ? "Record (emergency access)" : "Record")];
  if (ct.includes("json")) {
    parts.push(fhirView(await res.text(), { idPrefix: "read-fhir" }));
  } else {
    const blob = await res.blob();
    const ext = ct.split("/")[1] ? `.${ct.split("/")[1].replace(/[^a-z0-9]+/gi, "")}` : "";
    const saveAs = given || `record-${id.slice(2, 12)}${ext}`;
    parts.push(h("p", given ? h("strong.record-title", given) : null, given ? " — " : null, `a ${ct} file of ${fmtBytes(blob.size)}. `,
      h("a.btn.btn-secondary#download-record", { href: URL.createObjectURL(blob), download: saveAs }, "Download the file")));
  }
  parts.push(proof);
  box.replaceChildren(h("div", { class: emergency ? "warning-box" : "" }, ...parts));
  const heading = box.querySelector(".fhir-name");
  return heading ? heading.textContent : given;
}

// ---------------------------------------------------------------- upload and amend

const EXAMPLE_OBSERVATION = {
  resourceType: "Observation",
  status: "final",
  category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "laboratory", display: "Laboratory" }] }],
  code: { coding: [{ system: "http://loinc.org", code: "2339-0", display: "Glucose [Mass/volume] in Blood" }], text: "Blood glucose" },
  effectiveDateTime: "2024-05-02T08:30:00Z",
  valueQuantity: { value: 95, unit: "mg/dL", system: "http://unitsofmeasure.org", code: "mg/dL" },
};

/** The content part of an upload/amend form: FHIR JSON textarea or any file. Returns {el, read()} */
function contentFields(prefix) {
  const kFhir = choice("radio", `${prefix}-kind`, "fhir", "FHIR R4 resource (JSON)", { checked: true });
  const kFile = choice("radio", `${prefix}-kind`, "file", "A file (PDF, image, DICOM, …)");
  const json = field("FHIR JSON", h("textarea", { rows: "10", spellcheck: "false", name: "content" }), { hint: "Paste a FHIR R4 resource; it is checked as JSON before upload." });
  const example = h("button.btn.btn-quiet.btn-small", { type: "button" }, "Insert an example Observation");
  example.addEventListener("click", () => { json.input.value = JSON.stringify(EXAMPLE_OBSERVATION, null, 2); json.input.focus(); });
  const file = field("File", h("input", { type: "file", name: "file" }));
  const mt = field("Media type", h("input", { type: "text", name: "mediaType", placeholder: "e.g. application/pdf", autocomplete: "off" }), { hint: "Filled in from the file; change it if needed." });
  file.input.addEventListener("change", () => { const f0 = file.input.files[0]; if (f0) mt.input.value = f0.type || "application/octet-stream"; });
  const fhirBox = h("div", json.wrap, example);
  const fileBox = h("div", file.wrap, mt.wrap);
  const sync = () => { fhirBox.hidden = !kFhir.input.checked; fileBox.hidden = !kFile.input.checked; };
  kFhir.input.addEventListener("change", sync);
  kFile.input.addEventListener("change", sync);
  sync();
  const el = h("div", h("fieldset", h("legend", "Content"), kFhir.row, kFile.row), fhirBox, fileBox);
  const listeners = [];
  const changed = () => { for (const fn of listeners) fn(); };
  let typing = null;
  json.input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(changed, 500); });
  json.input.addEventListener("change", () => { clearTimeout(typing); changed(); });
  example.addEventListener("click", changed);
  file.input.addEventListener("change", changed);
  return {
    el,
    /** Call `fn` when the content changes (a new file, edited JSON). */
    onChange(fn) { listeners.push(fn); },
    /** What a suggestion is made from, without showing errors: {mediaType, content?, fileName?} or null. */
    peek() {
      if (kFhir.input.checked) {
        try {
          const obj = JSON.parse(json.input.value);
          return obj && typeof obj === "object" && !Array.isArray(obj) ? { mediaType: "application/fhir+json", content: obj } : null;
        } catch { return null; }
      }
      const f0 = file.input.files[0];
      return f0 ? { mediaType: mt.input.value.trim() || f0.type || "application/octet-stream", fileName: f0.name } : null;
    },
    /** Empty every content field and go back to FHIR JSON. */
    clear() {
      json.input.value = "";
      // (the title and category fields beside it are the form's)
      file.input.value = "";
      mt.input.value = "";
      kFhir.input.checked = true;
      sync();
    },
    /** {kind:"json", content, mediaType} | {kind:"file", file, mediaType} | null after showing errors */
    read() {
      if (kFhir.input.checked) {
        let obj;
        try { obj = JSON.parse(json.input.value); } catch (e) {
          setFieldError(json, `This is not valid JSON: ${e.message}`); json.input.focus(); return null;
        }
        if (!obj || typeof obj !== "object" || Array.isArray(obj) || typeof obj.resourceType !== "string") {
          setFieldError(json, "A FHIR resource is a JSON object with a \"resourceType\" (e.g. \"Observation\")."); json.input.focus(); return null;
        }
        setFieldError(json, "");
        return { kind: "json", content: obj, mediaType: "application/fhir+json" };
      }
      const f0 = file.input.files[0];
      if (!f0) { setFieldError(file, "Choose a file."); file.input.focus(); return null; }
      setFieldError(file, "");
      const type = mt.input.value.trim() || "application/octet-stream";
      if (!/^[\w.+-]+\/[\w.+-]+$/.test(type)) { setFieldError(mt, "A media type looks like type/subtype."); mt.input.focus(); return null; }
      setFieldError(mt, "");
      return { kind: "file", file: f0, mediaType: type };
    },
  };
}

/** The title field of an upload: suggested from the content (POST /v1/records/suggest), the provider's to change. */
function titleField(content, category) {
  const title = field("Title", h("input", { type: "text", name: "title", maxlength: "200", autocomplete: "off" }), {
    hint: "What the patient and you will see the record as. Suggested from the content; change it if needed. It is encrypted like the record.",
  });
  let edited = false;
  let categoryEdited = false;
  title.input.addEventListener("input", () => { edited = title.input.value.trim() !== ""; });
  if (category) category.input.addEventListener("change", () => { categoryEdited = true; });
  let asked = 0;
  content.onChange(async () => {
    const peek = content.peek();
    if (!peek) return;
    const mine = ++asked;
    try {
      // Nothing is stored: not a write, no idempotency key.
      const s = await request("POST", "/v1/records/suggest", { json: peek, write: false });
      if (mine !== asked) return;
      if (!edited) title.input.value = s.title;
      if (category && !categoryEdited && s.category && [...category.input.options].some((o) => o.value === s.category)) category.input.value = s.category;
    } catch { /* a suggestion is a help, not a step: the provider types the title */ }
  });
  return {
    field: title,
    value: () => title.input.value.trim(),
    /** A title already given (an amendment's record's): kept unless the provider changes it. */
    keep(value) { title.input.value = value; edited = value.trim() !== ""; },
    clear() { title.input.value = ""; edited = false; categoryEdited = false; },
  };
}

async function upload(main, { chain, params }) {
  const patient = field("Patient address", h("input", { type: "text", name: "patient", autocomplete: "off", spellcheck: "false", placeholder: "0x…", value: params.get("patient") || "" }), { required: true });
  const cats = Object.keys(chain.categories || {});
  const category = field("Category", h("select", { name: "category" }, cats.map((c) => h("option", { value: c }, categoryLabel(c)))), { required: true, hint: "Suggested from the content; change it if needed." });
  const content = contentFields("up");
  const title = titleField(content, category);
  const submit = h("button.btn", { type: "submit" }, "Upload record");
  const result = h("div", { "aria-live": "polite" });
  const form = h("form#upload-form", { novalidate: true }, patient.wrap, content.el, title.field.wrap, category.wrap, h("div.actions", submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = patient.input.value.trim();
    if (!isAddress(p)) { setFieldError(patient, "Enter a valid address (0x followed by 40 hex characters)."); patient.input.focus(); return; }
    setFieldError(patient, "");
    const c = content.read();
    if (!c) return;
    const t = title.value();
    result.replaceChildren();
    singleFlight(submit, "Uploading…", async (flight) => {
      let res;
      if (c.kind === "json") {
        res = await api.createRecordJson({ patient: checksum(p), category: category.input.value, content: c.content, mediaType: c.mediaType, ...(t ? { title: t } : {}) }, flight.key);
      } else {
        const fd = new FormData();
        fd.append("patient", checksum(p));
        fd.append("category", category.input.value);
        fd.append("mediaType", c.mediaType);
        if (t) fd.append("title", t);
        fd.append("fileName", c.file.name);
        fd.append("file", c.file, c.file.name);
        res = await api.createRecordFile(fd, flight.key);
      }
      // a filled form invites a second click that would upload the same record again
      patient.input.value = "";
      category.input.selectedIndex = 0;
      content.clear();
      title.clear();
      result.replaceChildren(h("div.card", h("h3", "Record uploaded"), h("dl.kv",
        t ? [h("dt", "Title"), h("dd.record-title", t)] : null,
        h("dt", "Record id"), h("dd.mono#new-record-id", res.recordId),
        h("dt", "Version"), h("dd", String(res.version)),
        h("dt", "CID"), h("dd.mono", res.cid),
        h("dt", "Transaction"), h("dd.mono", res.txHash)),
        h("a", { href: `#/provider/patients?patient=${checksum(p)}` }, "See this patient's records")));
      announce(`Record uploaded for ${shortHex(p)}: ${shortHex(res.recordId)}, version ${res.version}.`);
    }, { note: "Encrypting, storing and anchoring on the ledger…" });
  });
  main.replaceChildren(h("h1", "Upload a record"),
    h("section.card", { "aria-labelledby": "up-h" }, h("h2#up-h", "New record"),
      h("p.muted.small", "The record is encrypted before storage; only its fingerprint and your authorship are anchored on the ledger."), form),
    result);
}

async function amendRecord(r, reload) {
  const content = contentFields("am");
  const title = titleField(content, null);
  if (r.title) title.keep(r.title);
  let res = null;
  const ok = await modal({
    title: "Amend record (new version)",
    content: h("div", h("p.small", "The new version is linked to the previous one; earlier versions stay in the audit trail."),
      h("dl.kv", r.title ? [h("dt", "Title"), h("dd", r.title)] : null, h("dt", "Record"), h("dd.mono", r.recordId), h("dt", "Current version"), h("dd", String(r.version))),
      content.el, title.field.wrap),
    confirmLabel: "Save new version",
    busyLabel: "Saving…",
    busyNote: "Encrypting, storing and anchoring on the ledger…",
    onConfirm: async (flight) => {
      const c = content.read();
      if (!c) return undefined;
      const t = title.value();
      if (c.kind === "json") res = await api.amendJson(r.recordId, { content: c.content, mediaType: c.mediaType, ...(t ? { title: t } : {}) }, flight.key);
      else {
        const fd = new FormData();
        fd.append("mediaType", c.mediaType);
        if (t) fd.append("title", t);
        fd.append("fileName", c.file.name);
        fd.append("file", c.file, c.file.name);
        res = await api.amendFile(r.recordId, fd, flight.key);
      }
      return true;
    },
  });
  if (!ok || !res) return;
  announce(`Record ${shortHex(r.recordId)} amended: version ${res.version}.`);
  await reload();
}
