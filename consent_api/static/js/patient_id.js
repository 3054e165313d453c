// "Your patient ID": the full account a patient names themselves with to a clinic, to copy, show as a QR code
// or send as a link that opens the clinic's find-a-patient page (docs/architecture.md, "Patient directory").
import { h, announce, copyText, showError } from "./ui.js";
import { qrImage } from "./qr.js";

/** The link a patient shares: the provider's find-a-patient page with this patient filled in. */
export function shareLink(patient) {
  return `${location.origin}${location.pathname}#/provider/patients?patient=${patient}`;
}

function copyButton(label, hidden, value, done, fieldLabel) {
  const button = h("button.btn.btn-secondary.btn-small", { type: "button" }, label, h("span.visually-hidden", hidden));
  const fallback = h("p.small.copy-fallback", { hidden: true });
  button.addEventListener("click", async () => {
    if (await copyText(value)) { fallback.hidden = true; announce(done); return; }
    // the browser refused the clipboard: show the value selected, to copy by hand
    const input = h("input.mono.address-full", { type: "text", readonly: true, value, "aria-label": fieldLabel });
    fallback.replaceChildren("This browser did not allow copying. Select and copy it here: ", input);
    fallback.hidden = false;
    input.select();
  });
  return [button, fallback];
}

export function renderPatientId(body, { patient, me }) {
  const own = patient === me;
  const link = shareLink(patient);
  const [copyId, idFallback] = copyButton("Copy", own ? " your patient ID" : " the patient ID", patient, "Patient ID copied.", "Patient ID");
  const [copyLink, linkFallback] = copyButton("Copy link", "", link, "Link copied.", "Link for your clinic");
  const actions = [copyId, copyLink];
  if (navigator.share) {
    const share = h("button.btn.btn-secondary.btn-small", { type: "button" }, "Share…");
    share.addEventListener("click", () => {
      navigator.share({ title: "My patient ID", text: "My patient ID for Consent Ledger", url: link }).catch((err) => {
        if (err && err.name !== "AbortError") showError({ title: "Could not share", detail: "Copy the link instead." });
      });
    });
    actions.push(share);
  }
  body.replaceChildren(h("section.card.patient-id-card", { "aria-labelledby": "pid-h" },
    h("h2#pid-h", "Share it with a clinic"),
    h("p", own
      ? "Give this ID to a clinic so its staff can find you: show them the QR code, or send them the link."
      : "Give this ID to a clinic so its staff can find the patient: show them the QR code, or send them the link."),
    h("div.patient-id-layout",
      h("div.patient-id-text",
        h("p.patient-id-value.mono#patient-id", patient),
        h("div.actions", ...actions),
        idFallback, linkFallback,
        h("p.small", "Link for your clinic: ", h("a.share-link#share-link", { href: link }, link))),
      h("figure.patient-id-qr",
        qrImage(link, own ? "QR code of your patient ID link" : "QR code of the patient's ID link"),
        h("figcaption.small.muted", own ? "Clinic staff scan this code to find you." : "Clinic staff scan this code to find the patient."))),
    h("p.small.muted", "This ID only says who you are. It does not let anyone read your records: that still needs your consent.")));
}
