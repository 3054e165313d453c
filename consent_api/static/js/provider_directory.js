// The provider's find-a-patient cards: search the node's own patient directory by name, MRN or patient ID (or
// a patient's share link, typed, pasted or scanned from their QR code), and the details of one patient, to
// add to or change in that directory (docs/architecture.md, "Patient directory").
import { checksum, isAddress } from "./signing.js";
import { h, field, setFieldError, singleFlight, announce, table, problemText } from "./ui.js";
import { directory } from "./directory.js";
import { canScan, scanOnce } from "./qr.js";

/** The patient a typed or scanned value names: an ID (0x + 40 hex), or a share link holding one; else null. */
export function patientIn(value) {
  const v = String(value || "").trim();
  if (isAddress(v)) return checksum(v);
  const m = /[?&]patient=(0x[0-9a-fA-F]{40})(?:[&#]|$)/.exec(v);
  return m && isAddress(m[1]) ? checksum(m[1]) : null;
}

const fmtBirth = (iso) => {
  if (!iso) return "—";
  const [y, m, d] = iso.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
};

/** The search card; `open(address)` shows one patient. */
export async function findPatientCard(open, { another = false } = {}) {
  const input = h("input", { type: "search", name: "q", autocomplete: "off", spellcheck: "false" });
  const f = field("Name, MRN or patient ID", input, { hint: "Part of a name, a whole MRN, or the patient's ID (0x…) or the link they shared with you." });
  const submit = h("button.btn", { type: "submit" }, "Search");
  const results = h("div#directory-results", { "aria-live": "polite" });
  const scanning = await canScan();
  const scan = scanning ? h("button.btn.btn-secondary", { type: "button" }, "Scan a QR code") : null;
  const form = h("form#find-form", { novalidate: true, role: "search" }, f.wrap, h("div.actions", submit, scan));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (!v) { setFieldError(f, "Enter a name, an MRN or a patient ID."); input.focus(); return; }
    setFieldError(f, "");
    const patient = patientIn(v);
    if (patient) { open(patient); return; }
    if (/^0x[0-9a-f]{40}$/i.test(v) || /[?&]patient=/.test(v)) {
      // the length of an ID but not a valid one (a typo breaks its mixed-case checksum), or a damaged link
      setFieldError(f, "This patient ID is not valid: check it against the one the patient gave you, or ask them to share it again.");
      input.focus();
      return;
    }
    singleFlight(submit, "Searching…", async () => {
      const { patients } = await directory.find(v);
      results.replaceChildren(resultsTable(patients, v));
      announce(`${patients.length} patient${patients.length === 1 ? "" : "s"} found.`);
    }, { note: "Searching your patient directory…" });
  });
  if (scan) scan.addEventListener("click", () => scanDialog(open));
  return h("section.card", { "aria-labelledby": "find-h" },
    h("h2#find-h", another ? "Find another patient" : "Search your patients"),
    h("p.muted.small", "Your patient directory is kept by your organisation only. It is never shared with the network or written to the ledger."),
    form,
    scanning ? null : h("p.small.muted#scan-note", "This browser cannot scan QR codes: paste the patient's link or ID above instead."),
    results);
}

function resultsTable(patients, q) {
  const cols = [
    { label: "Name", cell: (p) => h("strong", p.name) },
    { label: "Date of birth", cell: (p) => fmtBirth(p.birthDate) },
    { label: "MRN", cell: (p) => p.mrn || "—" },
    { label: "Patient ID", cell: (p) => h("span.mono.wrap-anywhere", p.address) },
    {
      label: "Action", actions: true, cell: (p) => h("a.btn.btn-secondary.btn-small", { href: `#/provider/patients?patient=${p.address}` },
        "Open records", h("span.visually-hidden", ` of ${p.name}`)),
    },
  ];
  return table(cols, patients, { caption: `Patients matching “${q}”`, empty: `No patient in your directory matches “${q}”. Ask the patient for their patient ID or QR code, then add them.` });
}

async function scanDialog(open) {
  const dialog = document.getElementById("dialog");
  const video = h("video.qr-video", { muted: true, playsinline: true, "aria-label": "Camera view" });
  const note = h("p.small", { role: "status" }, "Point the camera at the patient's QR code.");
  const cancel = h("button.btn.btn-secondary", { type: "button" }, "Cancel");
  const controller = new AbortController();
  const close = () => { controller.abort(); if (dialog.open) dialog.close(); };
  cancel.addEventListener("click", close);
  dialog.addEventListener("cancel", close, { once: true });
  dialog.className = "";
  dialog.replaceChildren(h("div.dialog-body", h("h2#dialog-title", "Scan a patient's QR code"), video, note, h("div.actions", cancel)));
  dialog.showModal();
  cancel.focus();
  try {
    const text = await scanOnce(video, controller.signal);
    if (text === null) return;
    const patient = patientIn(text);
    if (!patient) { note.textContent = "This QR code holds no patient ID. Ask the patient to open “Your patient ID”."; return; }
    close();
    open(patient);
  } catch (err) {
    note.textContent = `The camera could not be used (${problemText(err)}). Paste the patient's link or ID instead.`;
  }
}

/** One patient's card: their directory entry (or a form to add them), with edit and remove. */
export async function patientCard(patient, onChange) {
  const card = h("section.card#patient-card", { "aria-labelledby": "patient-h" });
  let entry;
  try {
    entry = await directory.get(patient);
  } catch (err) {
    // the records below still show: the directory is only a help to find the patient
    card.replaceChildren(h("h2#patient-h", "Patient"), h("p.small", "Patient ID: ", h("span.mono.wrap-anywhere", patient)),
      h("p.field-error", `Your patient directory could not be read: ${problemText(err)}`));
    return { card, entry: null };
  }
  const show = (current, editing) => {
    const title = h("h2#patient-h", current ? current.name : "Patient");
    const id = h("p.small", "Patient ID: ", h("span.mono.wrap-anywhere#shown-patient-id", patient));
    if (current && !editing) {
      const edit = h("button.btn.btn-secondary.btn-small", { type: "button" }, "Edit details");
      edit.addEventListener("click", () => show(current, true));
      const remove = h("button.btn.btn-danger-outline.btn-small", { type: "button" }, "Remove from directory");
      remove.addEventListener("click", () => singleFlight(remove, "Removing…", async (flight) => {
        await directory.remove(patient, flight.key);
        announce(`${current.name} was removed from your patient directory. Their records are unchanged.`);
        show(null, true);
        onChange(null);
      }, { note: "Updating your patient directory…" }));
      card.replaceChildren(title, id, h("dl.kv",
        h("dt", "Date of birth"), h("dd", fmtBirth(current.birthDate)),
        h("dt", "MRN"), h("dd", current.mrn || "—")),
      h("div.actions", edit, remove));
      return;
    }
    card.replaceChildren(title, id,
      current ? null : h("p", "This patient is not in your patient directory yet. Add their details so your staff can find them by name or MRN."),
      entryForm(patient, current, (saved) => { show(saved, false); onChange(saved); }, current ? () => show(current, false) : null));
  };
  show(entry, !entry);
  return { card, entry };
}

function entryForm(patient, current, saved, cancelEdit) {
  const name = field("Name", h("input", { type: "text", name: "name", autocomplete: "off", value: current ? current.name : "" }), { required: true });
  const birth = field("Date of birth (optional)", h("input", { type: "date", name: "birthDate", value: current && current.birthDate ? current.birthDate : "" }));
  const mrn = field("MRN (optional)", h("input", { type: "text", name: "mrn", autocomplete: "off", spellcheck: "false", value: current && current.mrn ? current.mrn : "" }), { hint: "Your medical record number for this patient." });
  const submit = h("button.btn", { type: "submit" }, current ? "Save changes" : "Add to your directory");
  const cancel = cancelEdit ? h("button.btn.btn-secondary", { type: "button" }, "Cancel") : null;
  if (cancel) cancel.addEventListener("click", cancelEdit);
  const fields = { name, birthDate: birth, mrn };
  const form = h("form#directory-form", { novalidate: true }, name.wrap, birth.wrap, mrn.wrap, h("div.actions", submit, cancel));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const f of Object.values(fields)) setFieldError(f, "");
    if (!name.input.value.trim()) { setFieldError(name, "Enter the patient's name."); name.input.focus(); return; }
    const body = { name: name.input.value, birthDate: birth.input.value || null, mrn: mrn.input.value.trim() || null };
    singleFlight(submit, "Saving…", async (flight) => {
      const entry = await directory.put(patient, body, flight.key);
      announce(`${entry.name} is in your patient directory.`);
      saved(entry);
    }, {
      note: "Updating your patient directory…",
      onError: (err) => {
        const target = fields[err && err.extra && err.extra.field] || name;
        setFieldError(target, err && err.detail ? err.detail : problemText(err));
        target.input.focus();
      },
    });
  });
  return form;
}
