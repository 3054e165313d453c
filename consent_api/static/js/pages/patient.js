// Patient pages: records, consents (grant / revoke), disclosure timeline, delegates, and a passkey
// account's devices (passkeys) and recovery.
import { api } from "../api.js";
import { patientsNaming } from "../directory.js";
import { renderPatientId } from "../patient_id.js";
import { session } from "../session.js";
import { NO_PRF } from "../own_records.js";
import { addedPasskeyUserId, createPasskey, passkeyHints, passkeyMessage } from "../passkey.js";
import { ALL_RECORDS, checksum, deadlineFromNow, isAddress, purposeBytes32, signTyped } from "../signing.js";
import {
  h, field, choice, setFieldError, singleFlight, announce, modal, table, pill, hexSpan, timeEl, fmtBytes,
  purposeLabel, categoryLabel, PURPOSE_LABELS, shortHex, showError, problemText, addressWithCopy,
  fmtDate, inlineMessage, placeMessage, purposeName, purposeWords, visuallyHidden,
} from "../ui.js";
import { readOwnRecord } from "../own_records.js";
import { emergencyNotice } from "../emergency_notice.js";
import { fhirView } from "../fhir_view.js";
import { downloadName, knownLabel, recordName, showTitles, titlesHidden } from "../record_labels.js";

const TITLES = { records: "My records", consents: "Consents", disclosures: "Who has seen my records", delegates: "Delegates", devices: "Passkeys and recovery", id: "Your patient ID" };

export async function render(main, ctx) {
  const { section, params, chain } = ctx;
  const me = session.address;
  const actingFor = params.get("for") && isAddress(params.get("for")) ? checksum(params.get("for")) : me;
  const p = { chain, patient: actingFor, me, params, main, section };
  const head = [h("h1", TITLES[section] || "My records"), actingBanner(p)];
  const body = h("div");
  const fn = { records, consents, disclosures, delegates, devices, id: renderPatientId }[section];
  if (!fn) { location.replace("#/patient/records"); return; }
  // the landing page announces emergency accesses the patient has not reviewed yet (emergency_notice.js)
  const notice = section === "records" ? await emergencyNotice(p.patient, { self: p.patient === p.me }) : null;
  main.replaceChildren(...head.filter(Boolean), ...(notice ? [notice] : []), body);
  await fn(body, p);
}

function actingBanner(p) {
  // a passkey account can name a guardian but cannot be one (docs/architecture.md, "Passkey accounts")
  if (p.patient === p.me && (byPasskey() || p.section === "devices")) return null;
  if (p.patient !== p.me) {
    return h("p.warning-box", "You are acting as a guardian for patient ", hexSpan(p.patient), ". ",
      h("a", { href: `#/patient/${p.section}` }, "Back to your own records"));
  }
  const input = h("input", { type: "text", placeholder: "0x…", autocomplete: "off", spellcheck: "false" });
  const f = field("Patient ID", input, { hint: "The patient ID of someone who named you as their guardian (it starts with 0x)." });
  const go = h("button.btn.btn-secondary.btn-small", { type: "submit" }, "Act for this patient");
  const form = h("form", { novalidate: true }, f.wrap, go);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!isAddress(input.value)) { setFieldError(f, "Enter a patient ID: 0x followed by 40 letters and digits."); input.focus(); return; }
    location.hash = `#/patient/${p.section}?for=${checksum(input.value.trim())}`;
  });
  return h("details.small.delegate-switch", h("summary", "Acting for someone else?"), form);
}

const qs = (p) => (p.patient !== p.me ? `?for=${p.patient}` : "");
const byPasskey = () => session.signerKind === "passkey";
// A passkey patient is told what happened in plain words; a key holder also gets the transaction to look up.
// false only once a passkey's assertion came back without a PRF output (own_records.js cannot derive a key)
const passkeyWithoutPrf = () => byPasskey() && session.data && session.data.signer && session.data.signer.prf === false;

// ---------------------------------------------------------------- records

async function records(body, p) {
  const { records: list } = await api.records(p.patient);
  const rows = (list || []).slice().sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
  const own = p.patient === p.me;
  const noPrf = own && passkeyWithoutPrf();
  const viewer = h("section.card#record-view", { "aria-labelledby": "view-h", tabindex: "-1", hidden: true });
  const opened = new Map(); // what this page opened, by record version: Download after Read logs no second access
  const cols = [
    {
      // The title when it is open here (else the category and day), the record's id small below it.
      label: "Record", cell: (r) => h("span",
        h("span.record-title", recordName(r)),
        knownLabel(r) || r.erased ? null : h("span.muted.small.title-hidden", " · title not shown yet"),
        h("br"), h("span.muted.small", hexSpan(r.recordId, 10, 6))),
    },
    { label: "Category", cell: (r) => categoryLabel(r.category) },
    { label: "Type", cell: (r) => h("span", r.mediaType || "—", r.size !== undefined ? h("span.muted.small", ` · ${fmtBytes(r.size)}`) : null) },
    { label: "Version", cell: (r) => String(r.version ?? "—") },
    { label: "Author", cell: (r) => r.authorName || hexSpan(r.author) },
    { label: "Added", cell: (r) => timeEl(r.createdAt) },
    {
      label: "Actions", actions: true, cell: (r) => {
        if (r.erased) return pill("erased", "Erased");
        const mine = own && r.cid ? ownRecordActions(r, p, viewer, opened, noPrf) : [];
        const share = h("a.btn.btn-secondary.btn-small", { href: `#/patient/consents?record=${r.recordId}${p.patient !== p.me ? `&for=${p.patient}` : ""}` }, "Share");
        share.setAttribute("aria-label", `Share record ${shortHex(r.recordId)} with a provider`);
        const erase = h("button.btn.btn-danger-outline.btn-small", { type: "button" }, "Erase");
        erase.setAttribute("aria-label", `Erase record ${shortHex(r.recordId)}`);
        erase.addEventListener("click", () => eraseRecord(r, p, body));
        return [...mine.slice(0, 2), share, erase, ...mine.slice(2)];
      },
    },
  ];
  // Titles are sealed to the patient's own key: opened here on request (docs/architecture.md, "Record titles").
  let titles = null;
  if (own && !noPrf && titlesHidden(rows)) {
    const show = h("button.btn.btn-secondary.btn-small#show-titles", { type: "button" }, "Show titles");
    const titleError = h("p.field-error", { role: "alert", hidden: true });
    show.addEventListener("click", () => singleFlight(show, "Opening titles…", async () => {
      await showTitles(p.chain, async () => (await api.records(p.patient)).records || []);
      await records(body, p);
      const table_ = body.querySelector("#rec-h");
      if (table_) table_.focus?.();
      announce("Record titles opened in your browser.");
    }, {
      note: "Preparing your key…",
      onError: (err) => { titleError.textContent = problemText(err); titleError.hidden = false; },
    }));
    titles = h("div.titles-note", h("p.small", "Record titles are encrypted so that only you and the clinic that wrote each record can read them. Open them here with your own key."), show, titleError);
  }
  body.replaceChildren(h("section.card", { "aria-labelledby": "rec-h" },
    h("h2#rec-h", { tabindex: "-1" }, `Records (${rows.length})`),
    titles,
    h("p.muted.small", own
      ? "Records are encrypted; providers can read one only with your consent. You can read your own: it opens here, in your browser, and like every read it is logged where nobody can change it."
      : "Records are encrypted; providers can read one only with your consent, and every read is logged where nobody can change it."),
    noPrf ? h("div.warning-box#no-prf-note", { role: "note" }, h("strong", NO_PRF.title), h("p", NO_PRF.detail)) : null,
    table(cols, rows, { empty: "No records yet. Records appear here when a provider uploads one for you." })), viewer);
}

// ---------------------------------------------------------------- reading one's own record

// The service's allowlist of media types served as themselves (ledger_service/domain/media_types.py): the
// file's extension. Anything else is a download of application/octet-stream; JSON and text show inline,
// always as text nodes, never as a document.
const SERVED_TYPES = {
  "application/fhir+json": ".json", "application/json": ".json", "application/fhir+xml": ".xml", "application/pdf": ".pdf",
  "application/dicom": ".dcm", "image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tiff", "text/plain": ".txt",
  "text/csv": ".csv", "application/octet-stream": ".bin",
};
const essenceOf = (mediaType) => {
  const essence = String(mediaType || "").split(";")[0].trim().toLowerCase();
  return SERVED_TYPES[essence] ? essence : "application/octet-stream";
};
// The original file name when the record's title is open here, else a name made from the title, else the id.
const fileName = (r) => {
  const extension = SERVED_TYPES[essenceOf(r.mediaType)];
  return downloadName(r, extension, `record-${r.recordId.slice(2, 12)}-v${r.version}${extension}`);
};

function fileUrl(r, result) {
  if (!result.url) result.url = URL.createObjectURL(new Blob([result.plaintext], { type: essenceOf(r.mediaType) }));
  return result.url;
}

/** Read and Download of one of the patient's own records, with the place their errors are shown. */
function ownRecordActions(r, p, viewer, opened, disabled = false) {
  const label = `record ${shortHex(r.recordId)}`;
  const read = h("button.btn.btn-small", { type: "button", "aria-label": `Read ${label}`, disabled }, "Read");
  const download = h("button.btn.btn-secondary.btn-small", { type: "button", "aria-label": `Download ${label}`, disabled }, "Download");
  const error = h("p.field-error.row-error", { role: "alert", hidden: true });
  const act = (button, show) => {
    error.hidden = true;
    error.textContent = "";
    singleFlight(button, "Opening…", async (flight) => {
      const slot = `${r.recordId}|${r.version}`;
      let result = opened.get(slot);
      if (!result) {
        result = await readOwnRecord(r, p.chain, { step: flight.step });
        opened.set(slot, result);
        announce(`${recordName(r)} opened in your browser; your access was logged.`);
      }
      if (show) showOwnRecord(viewer, r, result);
      else saveFile(r, result);
    }, {
      note: "Logging your access first…",
      onError: (err) => { error.textContent = problemText(err); error.hidden = false; },
    });
  };
  read.addEventListener("click", () => act(read, true));
  download.addEventListener("click", () => act(download, false));
  return [read, download, error];
}

function saveFile(r, result) {
  const a = h("a", { href: fileUrl(r, result), download: fileName(r), hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

function showOwnRecord(viewer, r, result) {
  const type = essenceOf(result.mediaType);
  const json = type.endsWith("json");
  const text = json || type.startsWith("text/") ? new TextDecoder().decode(result.plaintext) : null;
  let content;
  if (json) {
    content = fhirView(text, { idPrefix: "own-fhir" });
  } else if (text !== null) {
    content = h("pre.text", { tabindex: "0", "aria-label": "Record content (text)" }, text);
  } else {
    content = h("p", `This record is a ${type} file of ${fmtBytes(result.plaintext.length)}; download it to open it.`);
  }
  const close = h("button.btn.btn-quiet.btn-small", { type: "button" }, "Close");
  close.addEventListener("click", () => { viewer.hidden = true; viewer.replaceChildren(); });
  viewer.replaceChildren(
    h("h2#view-h", recordName(r)),
    h("dl.kv",
      h("dt", "Version"), h("dd", String(r.version)),
      h("dt", "Category"), h("dd", categoryLabel(r.category)),
      h("dt", "Added by"), h("dd", r.authorName || r.author || "—"),
      h("dt", "Type"), h("dd", result.mediaType),
      h("dt", "Your access"), h("dd", "Logged")),
    result.disclosureTx ? h("details.ledger-proof", h("summary", "Proof of your access"),
      h("dl.kv", h("dt", "Transaction"), h("dd.mono", result.disclosureTx))) : null,
    h("p.muted.small", "Decrypted in your browser with your own key; it was not sent anywhere. Your access appears under Who has seen my records."),
    content,
    h("div.actions",
      h("a.btn.btn-secondary", { href: fileUrl(r, result), download: fileName(r) }, "Download the file"),
      close));
  viewer.hidden = false;
  viewer.focus({ preventScroll: true });
  viewer.scrollIntoView({ block: "start" });
}

async function eraseRecord(r, p, body) {
  const ok = await modal({
    title: "Erase this record permanently?",
    tone: "danger",
    content: h("div",
      h("p", "Erasing destroys the record's encryption keys and removes its stored copies. ", h("strong", "This cannot be undone:"), " nobody — not you, not any provider — will be able to read any version of this record again."),
      h("p", "A permanent trace that holds none of its content keeps the fact that the record existed and was erased, and the history of who read it."),
      h("dl.kv", h("dt", "Record"), h("dd", recordName(r)), h("dt", "Category"), h("dd", categoryLabel(r.category)), h("dt", "Author"), h("dd", r.authorName || r.author || "—"))),
    confirmLabel: "Erase permanently",
    confirmClass: "btn btn-danger",
    cancelLabel: "Keep the record",
    busyLabel: "Erasing…",
    busyNote: "Destroying the keys and logging the erasure…",
    onConfirm: async (flight) => {
      // The erasure is the patient's (or guardian's) signed request: the hub cannot erase without it.
      const signer = await session.signer();
      const { nonce } = await api.signerNonce(await signer.getAddress());
      const erase = { patient: p.patient, recordId: r.recordId, nonce: Number(nonce), deadline: deadlineFromNow() };
      const { signature } = await signTyped(signer, p.chain, "RecordErase", erase);
      return api.erase(r.recordId, erase, signature, flight.key);
    },
  });
  if (!ok) return;
  announce(`${recordName(r)} was erased.`);
  await records(body, p);
}

// ---------------------------------------------------------------- consents

const STATUS_TEXT = { active: "Active", pending: "Not yet valid", expired: "Expired", revoked: "Revoked" };

async function consents(body, p, done = null) {
  const [providersRes, recordsRes, consentsRes] = await Promise.all([
    api.providers(), api.records(p.patient).catch(() => ({ records: [] })), api.consents(p.patient),
  ]);
  const providers = (providersRes.providers || []).filter((x) => !x.suspended);
  const recs = (recordsRes.records || []).filter((r) => !r.erased);
  const reload = (next) => consents(body, p, next);
  const grantCard = grantForm(p, providers, recs, reload, done && done.granted);
  const list = (consentsRes.consents || []).slice().sort((a, b) => String(b.grantedAt).localeCompare(String(a.grantedAt)));
  const cols = [
    { label: "Provider", cell: (c) => c.granteeName || h("span", "Unknown provider ", hexSpan(c.grantee)) },
    { label: "What they may read", cell: (c) => scopeText(c, recs) },
    { label: "Purpose", cell: (c) => purposeName(c.purpose) },
    { label: "Valid", cell: (c) => h("span", timeEl(c.validFrom, { time: false }), " – ", Number(c.validUntil) ? timeEl(c.validUntil, { time: false }) : "no end date") },
    { label: "Status", cell: (c) => pill(c.status, STATUS_TEXT[c.status] || c.status) },
    { label: "Granted", cell: (c) => timeEl(c.grantedAt) },
    {
      label: "Actions", actions: true, cell: (c) => {
        if (c.status !== "active" && c.status !== "pending") return "";
        const b = h("button.btn.btn-danger-outline.btn-small", { type: "button" }, "Revoke",
          visuallyHidden(` ${c.granteeName || "this provider"}'s access for ${purposeWords(c.purpose)}`));
        const slot = h("div.row-message", { hidden: true });
        b.addEventListener("click", () => revoke(c, p, b, slot, reload));
        return [b, slot];
      },
    },
  ];
  const listCard = h("section.card#consent-list", { "aria-labelledby": "cons-h", tabindex: "-1" },
    h("h2#cons-h", "Your consents"),
    done && done.revoked ? done.revoked : null,
    table(cols, list, { empty: "You have not granted any access yet." }));
  body.replaceChildren(grantCard, listCard);
  // after an action, focus stays with its result: the grant's message beside the form, or the updated list
  if (done && done.granted) done.granted.focus({ preventScroll: false });
  else if (done && done.revoked) listCard.focus({ preventScroll: false });
}

/** What a consent lets the provider read, in plain words. */
function scopeText(c, recs = []) {
  if (c.scopeKind === "all") return "All your records";
  if (c.scopeKind === "category") return `Your ${categoryLabel(c.scopeLabel).toLowerCase()} records`;
  const r = recs.find((x) => x.recordId === String(c.scope || c.scopeLabel).toLowerCase());
  return r ? `One record: ${recordName(r)}` : "One record";
}

const GRANT_DAYS = 90; // the default length of a grant (issue #16: a default expiry, changeable)

function grantForm(p, providers, recs, reload, granted = null) {
  const chain = p.chain;
  const providerSel = h("select", { name: "grantee" },
    h("option", { value: "" }, providers.length ? "Choose a provider…" : "No providers available"),
    providers.map((x) => h("option", { value: x.address }, x.name)));
  const fProvider = field("Provider", providerSel, { required: true });

  const preRecord = p.params.get("record");
  const sAll = choice("radio", "scope", "all", "All my records", { checked: !preRecord });
  const sCat = choice("radio", "scope", "category", "Records of one kind");
  const sRec = choice("radio", "scope", "record", "One record", { checked: Boolean(preRecord) });
  const cats = Object.keys(chain.categories || {});
  const catSel = h("select", { name: "category", "aria-label": "Kind of record" }, cats.map((c) => h("option", { value: c }, categoryLabel(c))));
  const recSel = h("select", { name: "record", "aria-label": "Record" },
    recs.length ? recs.map((r) => h("option", { value: r.recordId, selected: r.recordId === preRecord }, `${recordName(r)}${r.authorName ? ` · from ${r.authorName}` : ""}`))
      : h("option", { value: "" }, "No records yet"));
  const scopeSet = h("fieldset", h("legend", "What they may read"),
    sAll.row, sCat.row, h("div.nested", catSel), sRec.row, h("div.nested", recSel));
  const syncScope = () => { catSel.disabled = !sCat.input.checked; recSel.disabled = !sRec.input.checked; };
  for (const s of [sAll, sCat, sRec]) s.input.addEventListener("change", syncScope);
  syncScope();

  const purposes = (chain.purposes || Object.keys(PURPOSE_LABELS)).filter((c) => c !== "ETREAT");
  const purposeSel = h("select", { name: "purpose" }, purposes.map((c) => h("option", { value: c, selected: c === "TREAT" }, purposeName(c))));
  const fPurpose = field("Purpose of use", purposeSel, { required: true, hint: "They may read only for this purpose. Emergency treatment is never granted here." });

  const today = new Date();
  const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const inDays = (n) => { const d = new Date(); d.setDate(d.getDate() + n); return iso(d); };
  const fFrom = field("Valid from", h("input", { type: "date", name: "validFrom", value: iso(today) }), { required: true });
  const fUntil = field("Valid until", h("input", { type: "date", name: "validUntil", value: inDays(GRANT_DAYS) }),
    { hint: `${GRANT_DAYS} days from today unless you change it. Access ends at the end of that day.` });
  const noExpiry = choice("checkbox", "noExpiry", "1", "No end date (until I revoke it)");
  noExpiry.input.addEventListener("change", () => {
    fUntil.input.disabled = noExpiry.input.checked;
    if (!noExpiry.input.checked && !fUntil.input.value) fUntil.input.value = inDays(GRANT_DAYS);
  });
  const submit = h("button.btn", { type: "submit" }, "Review and grant…");
  const result = h("div.action-message#grant-result", { hidden: !granted });
  if (granted) result.append(granted);
  const form = h("form#grant-form", { novalidate: true },
    fProvider.wrap, scopeSet, fPurpose.wrap,
    h("div.row", fFrom.wrap, h("div.field", fUntil.wrap, noExpiry.row)),
    h("p.muted.small", byPasskey()
      ? "You check the details, then confirm with your passkey. You can revoke it at any time."
      : "You check the details, then sign with your key. You can revoke it at any time."),
    h("div.actions", submit), result);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    result.hidden = true;
    result.replaceChildren();
    setFieldError(fProvider, providerSel.value ? "" : "Choose a provider.");
    if (!providerSel.value) { providerSel.focus(); return; }
    const from = startOfDay(fFrom.input.value);
    setFieldError(fFrom, from === null ? "Enter a start date." : "");
    if (from === null) { fFrom.input.focus(); return; }
    let until = 0;
    if (!noExpiry.input.checked) {
      until = endOfDay(fUntil.input.value);
      const bad = until === null ? "Enter an end date or choose no end date." : until <= from ? "The end date must be after the start date." : "";
      setFieldError(fUntil, bad);
      if (bad) { fUntil.input.focus(); return; }
    } else setFieldError(fUntil, "");
    let scope = ALL_RECORDS;
    let what = "ALL your records";
    if (sCat.input.checked) { scope = chain.categories[catSel.value]; what = `your ${categoryLabel(catSel.value).toLowerCase()} records`; }
    if (sRec.input.checked) {
      const r = recs.find((x) => x.recordId === recSel.value);
      if (!r) { placeMessage(result, inlineMessage("error", "No record chosen", h("p", "There is no record to share yet: choose all your records or one kind of record."))); return; }
      scope = r.recordId; what = `one record: ${recordName(r)}`;
    }
    const chosen = providers.find((x) => x.address === providerSel.value);
    const providerName = (chosen && chosen.name) || providerSel.selectedOptions[0].textContent;
    const purpose = purposeSel.value;
    const when = until ? `until ${fmtDate(until, { time: false })}` : "with no end date";
    const starts = from * 1000 > Date.now() + 86400000 ? `, starting ${fmtDate(from, { time: false })}` : "";
    const sentence = `${providerName} may read ${what} for ${purposeWords(purpose)}, ${when}${starts}.`;
    const broad = scope === ALL_RECORDS;
    const research = purpose === "HRESCH";
    const warnings = [];
    if (broad) warnings.push(h("li", "This covers every record you have now ", h("strong", "and every record added later"), ", from any clinic."));
    if (research) warnings.push(h("li", "Research use is not about your own care: the records may be read by people who never treat you."));
    if (!until) warnings.push(h("li", "There is no end date: access lasts until you revoke it."));
    const signAndGrant = async (flight) => {
      const signer = await session.signer();
      const { nonce } = await api.signerNonce(await signer.getAddress());
      const grant = {
        patient: p.patient,
        grantee: checksum(providerSel.value),
        scope,
        purpose: purposeBytes32(purpose),
        validFrom: from,
        validUntil: until,
        nonce: Number(nonce),
        deadline: deadlineFromNow(),
      };
      const { signature } = await signTyped(signer, chain, "ConsentGrant", grant);
      flight.step("Saving your consent…");
      return api.grant(grant, signature, flight.key);
    };
    const ok = await modal({
      title: "Check before you grant",
      tone: broad || research ? "emergency" : "",
      content: h("div#grant-review",
        h("p.review-sentence", sentence),
        broad || research
          ? h("div.warning-box#grant-warning", { role: "note" },
            h("strong", broad && research ? "This is a very broad grant." : "This is a broad grant."),
            h("ul", warnings),
            h("p", "If you are not sure, go back and choose fewer records, a shorter time, or another purpose."))
          : (!until ? h("p.muted.small", "There is no end date: access lasts until you revoke it.") : null),
        h("p.muted.small", "Every read of your records is logged, and you can see who read what on the \u201cWho has seen my records\u201d page. You can revoke this at any time.")),
      confirmLabel: "Sign and grant access",
      cancelLabel: "Go back and change",
      busyLabel: "Signing…",
      busyNote: byPasskey() ? "Confirm with your passkey…" : "Signing and saving your consent…",
      onConfirm: (flight) => signAndGrant(flight).catch((err) => {
        // shown in the dialog, beside its button, in plain words (no HTTP status for the patient); a grant
        // that timed out may still be recorded, so the patient looks before signing another
        const unsure = err && [0, 502, 503, 504].includes(err.status);
        const next = unsure ? "It may still be recorded: look under \u201cYour consents\u201d before you try again." : "Nothing was granted: check the details and try again.";
        throw { title: unsure ? "Not confirmed" : "Not granted", detail: `${plainProblem(err).replace(/\.$/, "")}. ${next}` };
      }),
    });
    if (!ok) return;
    announce(`Access granted: ${sentence}`);
    if (p.params.get("record")) history.replaceState(null, "", `#/patient/consents${qs(p)}`);
    await reload({
      granted: inlineMessage("ok", "Access granted",
        h("p", sentence),
        h("p", "It is listed under \u201cYour consents\u201d below, where you can revoke it at any time.")),
    });
  });
  return h("section.card", { "aria-labelledby": "grant-h" }, h("h2#grant-h", "Grant access"), form);
}

function startOfDay(v) {
  if (!v) return null;
  const [y, m, d] = v.split("-").map(Number);
  const t = new Date(y, m - 1, d, 0, 0, 0);
  return Number.isNaN(t.getTime()) ? null : Math.floor(t.getTime() / 1000);
}
function endOfDay(v) {
  if (!v) return null;
  const [y, m, d] = v.split("-").map(Number);
  const t = new Date(y, m - 1, d, 23, 59, 59);
  return Number.isNaN(t.getTime()) ? null : Math.floor(t.getTime() / 1000);
}

async function revoke(c, p, button, slot, reload) {
  const who = c.granteeName || "This provider";
  const ok = await modal({
    title: "Revoke this consent?",
    tone: "danger",
    content: h("div",
      h("p", `${who} will no longer be able to read ${String(scopeText(c)).replace(/^\w/, (x) => x.toLowerCase())} for ${purposeWords(c.purpose)}.`),
      h("p.muted.small", "Reads that already happened stay in your history of who has seen your records.")),
    confirmLabel: "Sign and revoke",
    confirmClass: "btn btn-danger",
    cancelLabel: "Keep access",
  });
  if (!ok) return;
  slot.hidden = true;
  await singleFlight(button, "Revoking…", async (flight) => {
    const signer = await session.signer();
    const { nonce } = await api.signerNonce(await signer.getAddress());
    const revokeMsg = { patient: p.patient, consentId: c.consentId, nonce: Number(nonce), deadline: deadlineFromNow() };
    const { signature } = await signTyped(signer, p.chain, "ConsentRevoke", revokeMsg);
    await api.revoke(c.consentId, revokeMsg, signature, flight.key);
    const text = `${who} can no longer read these records for ${purposeWords(c.purpose)}.`;
    announce(`Consent revoked: ${text}`);
    await reload({ revoked: inlineMessage("ok", "Consent revoked", h("p", text)) });
  }, {
    note: "Revoking…",
    onError: (err) => placeMessage(slot, inlineMessage("error", "Not revoked", h("p", plainProblem(err)),
      h("p", "The consent is unchanged. Try again; if it keeps failing, sign out and in again."))),
  });
}

// An error's words without its HTTP status, for the patient's pages.
const plainProblem = (err) => [err && err.title, err && (err.detail || err.message)].filter(Boolean).join(": ") || "Something went wrong.";

// ---------------------------------------------------------------- disclosures

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** "30 Nov" (and the year when it is not this one), in the page's words. */
function dayText(seconds) {
  const d = new Date(Number(seconds) * 1000);
  if (Number.isNaN(d.getTime())) return "";
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return `${d.getDate()} ${MONTHS[d.getMonth()]}${sameYear ? "" : ` ${d.getFullYear()}`}`;
}

async function disclosures(body, p) {
  // Records and consents name what was read and under which consent (titles as this page has opened them).
  const [{ disclosures: list }, recordList, consentList] = await Promise.all([
    api.disclosures(p.patient),
    api.records(p.patient).catch(() => ({ records: [] })),
    api.consents(p.patient).catch(() => ({ consents: [] })),
  ]);
  const recordsById = new Map((recordList.records || []).map((r) => [r.recordId.toLowerCase(), r]));
  const consentsById = new Map((consentList.consents || []).map((c) => [String(c.consentId).toLowerCase(), c]));
  const items = (list || []).slice().sort((a, b) => (Number(b.blockNumber) - Number(a.blockNumber)) || String(b.timestamp).localeCompare(String(a.timestamp)));
  const emergencies = items.filter((d) => d.emergency).length;
  const summary = h("p", `${p.patient === p.me ? "Your" : "The patient's"} records were seen ${items.length} time${items.length === 1 ? "" : "s"}`,
    emergencies ? h("span", ", including ", h("strong", `${emergencies} emergency access${emergencies === 1 ? "" : "es"}`)) : "", ".");
  if (!items.length) {
    body.replaceChildren(h("section.card", summary, h("p.empty", "Nobody has read your records yet.")));
    return;
  }
  const own = p.patient === p.me;
  let titles = null;
  if (own && !passkeyWithoutPrf() && titlesHidden([...recordsById.values()])) {
    const show = h("button.btn.btn-secondary.btn-small#show-titles", { type: "button" }, "Show titles");
    const titleError = h("p.field-error", { role: "alert", hidden: true });
    show.addEventListener("click", () => singleFlight(show, "Opening titles…", async () => {
      await showTitles(p.chain, async () => (await api.records(p.patient)).records || []);
      await disclosures(body, p);
      announce("Record titles opened in your browser.");
    }, { note: "Preparing your key…", onError: (err) => { titleError.textContent = problemText(err); titleError.hidden = false; } }));
    titles = h("div.titles-note", h("p.small", "Records are named by their titles once you open them with your own key."), show, titleError);
  }
  const ol = h("ol.timeline", { "aria-label": "Who saw your records, newest first" });
  for (const d of items) {
    const li = h("li", { class: d.emergency ? "emergency" : "" });
    const self = String(d.accessor || "").toLowerCase() === p.patient.toLowerCase();
    const who = self ? (own ? "You" : "The patient") : d.accessorName || "A provider";
    const record = recordsById.get(String(d.recordId).toLowerCase());
    const what = record ? recordName(record) : "an erased record";
    const consent = consentsById.get(String(d.consentId || "").toLowerCase());
    const patientsOwn = self && !/[1-9a-f]/i.test(String(d.consentId || "").slice(2));
    let basis;
    if (d.emergency) basis = " in an emergency, without consent";
    else if (patientsOwn) basis = own ? ", your own request" : ", the patient's own request";
    else if (consent) basis = `, under ${own ? "your" : "the patient's"} consent of ${dayText(consent.grantedAt)}`;
    else basis = `, under ${own ? "your" : "the patient's"} consent`;
    const sentence = h("p.disclosure-sentence",
      d.emergency ? h("span.emergency-flag", h("span", { "aria-hidden": "true" }, "⚠"), "Emergency access") : null,
      d.emergency ? " " : null,
      h("span.who", who), " read ", h("strong.record-title", what), ` on ${dayText(d.timestamp)}`,
      patientsOwn || d.emergency ? "" : `, for ${purposeWords(d.purpose)}`, basis, ".");
    const facts = h("dl.kv",
      h("dt", "When"), h("dd", timeEl(d.timestamp)),
      d.emergency ? [h("dt", "Reason given"), h("dd", h("strong", d.reason || "—"))] : null,
      d.version !== undefined ? [h("dt", "Version read"), h("dd", String(d.version))] : null);
    // The proof, for whoever checks it: collapsed, in the ledger's own terms.
    const proof = h("details.ledger-proof",
      h("summary", "Proof of this access"),
      h("dl.kv",
        h("dt", "Record id"), h("dd.mono", d.recordId),
        h("dt", "Read by"), h("dd.mono", d.accessor || "—"),
        h("dt", "Purpose code"), h("dd", purposeLabel(d.purpose)),
        d.emergency || patientsOwn ? null : [h("dt", "Consent id"), h("dd.mono", d.consentId || "—")],
        h("dt", "Block"), h("dd", String(d.blockNumber ?? "—")),
        d.txHash ? [h("dt", "Transaction"), h("dd.mono", d.txHash)] : null),
      d.proof ? h("div", h("p.small", "Receipt (inclusion proof):"), h("pre.json", { tabindex: "0" }, JSON.stringify(d.proof, null, 2))) : null);
    li.append(sentence, facts, proof);
    ol.append(li);
  }
  body.replaceChildren(h("section", summary, titles, ol));
}

// ---------------------------------------------------------------- delegates

/** Remove a guardian: a DelegateRevoke only the patient can sign (a guardian cannot remove itself or others). */
function removeDelegateButton(d, body, p) {
  const button = h("button.btn.btn-secondary.btn-small", { type: "button" }, "Remove", h("span.visually-hidden", ` delegate ${d.delegate}`));
  button.addEventListener("click", () => singleFlight(button, "Removing…", async (flight) => {
    const signer = await session.signer();
    const { nonce } = await api.signerNonce(await signer.getAddress());
    const revoke = { patient: p.patient, delegate: checksum(d.delegate), nonce: Number(nonce), deadline: deadlineFromNow() };
    const { signature } = await signTyped(signer, p.chain, "DelegateRevoke", revoke);
    const res = await api.removeDelegate(p.patient, revoke.delegate, revoke, signature, flight.key);
    announce(`Guardian ${shortHex(d.delegate)} removed.`);
    await delegates(body, p);
  }));
  return button;
}

async function delegates(body, p) {
  const { delegates: list } = await api.delegates(p.patient);
  const addr = field("Delegate's address", h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "0x…" }), { required: true, hint: "A guardian or carer who may manage consents and see your records for you. Ask them for their patient ID: it is on their \"Your patient ID\" page." });
  const fUntil = field("Valid until", h("input", { type: "date", disabled: true }));
  const noExpiry = choice("checkbox", "delegateNoExpiry", "1", "No expiry", { checked: true });
  noExpiry.input.addEventListener("change", () => { fUntil.input.disabled = noExpiry.input.checked; });
  const submit = h("button.btn", { type: "submit" }, "Sign and add delegate");
  const form = h("form#delegate-form", { novalidate: true }, addr.wrap, h("div.field", fUntil.wrap, noExpiry.row), h("div.actions", submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const a = addr.input.value.trim();
    if (!isAddress(a)) { setFieldError(addr, "Enter a valid address (0x followed by 40 hex characters)."); addr.input.focus(); return; }
    setFieldError(addr, "");
    let until = 0;
    if (!noExpiry.input.checked) {
      until = endOfDay(fUntil.input.value);
      if (!until || until * 1000 < Date.now()) { setFieldError(fUntil, "Choose a date in the future."); fUntil.input.focus(); return; }
    }
    setFieldError(fUntil, "");
    singleFlight(submit, "Signing…", async (flight) => {
      const signer = await session.signer();
      const { nonce } = await api.signerNonce(await signer.getAddress());
      const msg = { patient: p.patient, delegate: checksum(a), validUntil: until, nonce: Number(nonce), deadline: deadlineFromNow() };
      const { signature } = await signTyped(signer, p.chain, "DelegateGrant", msg);
      flight.step("Saving…");
      const res = await api.addDelegate(p.patient, msg, signature, flight.key);
      announce(`Guardian ${shortHex(a)} added.`);
      await delegates(body, p);
    });
  });
  const cols = [
    { label: "Delegate", cell: (d) => h("span.mono", d.delegate) },
    { label: "Valid until", cell: (d) => (Number(d.validUntil) ? timeEl(d.validUntil, { time: false }) : "No expiry") },
    { label: "Status", cell: (d) => (d.live ? pill("active", "Active") : pill("expired", "Not active")) },
    { label: "Action", cell: (d) => removeDelegateButton(d, body, p) },
  ];
  body.replaceChildren(
    h("section.card", { "aria-labelledby": "del-add-h" }, h("h2#del-add-h", "Name a delegate"), form),
    h("section.card", { "aria-labelledby": "del-h" }, h("h2#del-h", "Your delegates"), table(cols, list || [], { empty: "You have not named any delegate." })),
    await namedMe(p));
}

/** The patients who named the signed-in account their guardian, each with a link to act for them. */
async function namedMe(p) {
  if (p.patient !== p.me) return null;
  let named;
  try {
    ({ patients: named } = await patientsNaming(p.me));
  } catch (err) {
    return h("section.card", h("h2", "People who named you as their guardian"), h("p.field-error", problemText(err)));
  }
  if (!named || !named.length) return null;
  const cols = [
    { label: "Patient ID", cell: (n) => h("span.mono.wrap-anywhere", n.patient) },
    { label: "Valid until", cell: (n) => (Number(n.validUntil) ? timeEl(n.validUntil, { time: false }) : "No expiry") },
    { label: "Status", cell: (n) => (n.live ? pill("active", "Active") : pill("expired", "Not active")) },
    {
      label: "Action", cell: (n) => (n.live
        ? h("a.btn.btn-secondary.btn-small", { href: `#/patient/records?for=${n.patient}` }, "Act for this patient", h("span.visually-hidden", ` ${n.patient}`))
        : h("span.muted.small", "No longer your patient to act for")),
    },
  ];
  return h("section.card#named-me", { "aria-labelledby": "named-h" }, h("h2#named-h", "People who named you as their guardian"),
    h("p.muted.small", "You may see their records and manage their consents for them while their choice is active."),
    table(cols, named));
}

// ---------------------------------------------------------------- passkeys and recovery

const sameKey = (a, b) => a && b && a.x && b.x && a.x.toLowerCase() === b.x.toLowerCase() && a.y.toLowerCase() === b.y.toLowerCase();

/** A passkey account's devices (its passkeys, as the chain has them), adding and removing one, and recovery. */
async function devices(body, p) {
  if (p.patient !== p.me) { location.replace("#/patient/records"); return; }
  const accountCard = h("section.card", { "aria-labelledby": "acct-h" },
    h("h2#acct-h", "Your account"),
    h("p", "Your account number, for a clinic or a guardian who needs to find you: ", addressWithCopy(p.me)));
  if (!byPasskey()) {
    body.replaceChildren(accountCard, h("section.card", h("p", "You signed in with a key, not a passkey. Passkeys are for accounts created with one, on the sign-in page.")));
    return;
  }
  const account = await api.account(p.me);
  const keys = account.passkeys || [];
  const hint = passkeyHints.get(p.me);
  const here = hint ? hint.credentials.filter((c) => c.x) : [];
  const items = keys.map((k, i) => {
    const madeHere = here.some((c) => sameKey(c, k));
    const li = h("li", h("div", h("strong", `Passkey ${i + 1}`), madeHere ? h("span.muted.small", " · made in this browser") : null));
    if (keys.length > 1) li.append(h("div.actions", removeDeviceButton(k, i, madeHere, body, p)));
    return li;
  });
  const add = h("button.btn#add-device", { type: "button" }, "Add another device");
  add.addEventListener("click", () => addDevice(body, p));
  body.replaceChildren(
    accountCard,
    h("section.card", { "aria-labelledby": "devices-h" },
      h("h2#devices-h", `Your passkeys (${keys.length})`),
      h("p.muted.small", "Each passkey can sign in and act for you. Keep at least two, on different devices."),
      h("ul.key-list#passkey-list", items),
      h("div.actions", add)),
    h("section.card#recovery", { "aria-labelledby": "recovery-h" },
      h("h2#recovery-h", "Recovery"),
      h("p", "If you lose the only device that holds your passkey, nobody can get your account back for you: not the clinic, not us. Two ways to stay safe:"),
      h("ul",
        h("li", h("strong", "Add another device"), ": a second passkey, on your phone, a security key or another computer. Either one can sign in; if you lose one, sign in with the other and remove the lost one here."),
        h("li", h("strong", "Name a guardian"), ": someone you trust who can manage your consents and see your records for you, with their own key. ", h("a", { href: "#/patient/delegates" }, "Name a guardian"), ".")),
      h("p.muted.small", "Each device opens your records with a key of its own: the first time you read a record on a new device, you confirm once more.")));
}

function addDevice(body, p) {
  const name = field("Name on the new passkey (optional)", h("input", { type: "text", autocomplete: "off", maxlength: "64" }),
    { hint: "Shown only in that device's list of passkeys." });
  return modal({
    title: "Add another device",
    content: h("div",
      h("p", "When your browser asks, choose the device to add: a phone (scan the code it shows), a security key, or another computer's passkey. Then confirm with the passkey you signed in with."),
      name.wrap),
    confirmLabel: "Add a device",
    busyLabel: "Waiting for the new device…",
    busyNote: "Follow your browser's prompts.",
    onConfirm: async (flight) => {
      const signer = await session.signer();
      const created = await createPasskey({ userId: addedPasskeyUserId(p.me), name: name.input.value.trim(), exclude: signer.credentialIds });
      flight.step("Checking your account…");
      const account = await api.account(p.me);
      if ((account.passkeys || []).some((k) => sameKey(k, created.publicKey))) {
        throw { title: "Already added", detail: "This passkey is already one of your account's." };
      }
      flight.step("Confirm with this device…");
      const { domain, types, message } = passkeyMessage("AddPasskey", p.chain, p.me, created.publicKey);
      const signature = await signer.signTypedData(domain, types, message);
      flight.step("Adding it to your account…");
      await api.addPasskey(p.me, { publicKey: created.publicKey, nonce: message.nonce, deadline: message.deadline, signature }, flight.key);
      passkeyHints.remember(p.me, { id: created.credentialId, ...created.publicKey });
      if (!signer.credentialIds.includes(created.credentialId)) signer.credentialIds.push(created.credentialId);
      return true;
    },
  }).then(async (ok) => {
    if (!ok) return;
    announce("Your new device was added: it can sign in and act for you.");
    await devices(body, p);
  });
}

function removeDeviceButton(key, index, madeHere, body, p) {
  const button = h("button.btn.btn-danger-outline.btn-small", { type: "button", "aria-label": `Remove passkey ${index + 1}` }, "Remove");
  button.addEventListener("click", async () => {
    const ok = await modal({
      title: `Remove passkey ${index + 1}?`,
      tone: "danger",
      content: h("div",
        h("p", "That passkey will no longer sign in or act for you. Do this for a lost or retired device."),
        madeHere ? h("p", h("strong", "It was made in this browser: "), "if it is the one you use here, sign in next time with another of your passkeys.") : null),
      confirmLabel: "Remove it",
      confirmClass: "btn btn-danger",
      cancelLabel: "Keep it",
      busyLabel: "Removing…",
      busyNote: "Confirm with your passkey…",
      onConfirm: async (flight) => {
        const signer = await session.signer();
        const { domain, types, message } = passkeyMessage("RemovePasskey", p.chain, p.me, key);
        const signature = await signer.signTypedData(domain, types, message);
        return api.removePasskey(p.me, { publicKey: { x: key.x, y: key.y }, nonce: message.nonce, deadline: message.deadline, signature }, flight.key);
      },
    });
    if (!ok) return;
    announce(`Passkey ${index + 1} was removed from your account.`);
    await devices(body, p);
  });
  return button;
}
