// A refused read, shown beside the read form with what the provider can do next: the purposes its consents
// from this patient cover for the record now (GET /v1/records/{id}/access), asking the patient for consent,
// or emergency access where it is entitled to it (docs/architecture.md, "The path of a read").
import { api } from "./api.js";
import { h, inlineMessage, purposeLabel } from "./ui.js";

// the detail without a repeated "access refused:" at its start (the message's title says it)
const detailOf = (err) => String((err && (err.detail || err.message)) || "").replace(/^access refused:\s*/i, "");

/**
 * The message for a read of `recordId` for `purpose` that failed with `err`. `choosePurpose(code)` selects
 * another purpose in the form; `breakGlass` is the emergency access button (or null when not entitled).
 */
export async function refusalHelp(err, { recordId, purpose, choosePurpose, breakGlass }) {
  const status = err && err.status;
  const type = String((err && err.type) || "");
  if (status === 410 || type.endsWith("/record-erased") || type.endsWith("/key-destroyed")) {
    return inlineMessage("error", "This record was erased",
      h("p", "The patient erased it: nobody can read any version of it any more."),
      h("p", "If you need the information, ask the patient or look for a newer record."));
  }
  if (status === 404) {
    return inlineMessage("error", "No such record",
      h("p", detailOf(err) || "No record has this id."),
      h("p", "Check the record id: pick it from the patient's list of records above."));
  }
  if (status !== 403) {
    return inlineMessage("error", (err && err.title) || "The record could not be read",
      h("p", detailOf(err)), h("p", "Nothing was read. Try again in a moment."));
  }
  let access = null;
  try {
    access = await api.recordAccess(recordId);
  } catch {
    /* the next steps below do not need it */
  }
  const covered = (access && access.coveredPurposes) || [];
  const steps = h("ul.next-steps");
  if (covered.length) {
    const choices = covered.map((code) => {
      const b = h("button.btn.btn-secondary.btn-small", { type: "button" }, `Use ${purposeLabel(code)}`);
      b.addEventListener("click", () => choosePurpose(code));
      return b;
    });
    steps.append(h("li", "Your consents from this patient cover this record for: ",
      h("strong.covered-purposes", covered.map(purposeLabel).join(", ")),
      ". Read it for one of these only if it is your real purpose. ", h("span.actions", choices)));
  } else {
    steps.append(h("li", "No consent from this patient covers this record for you now, for any purpose."));
  }
  steps.append(h("li", "Ask the patient to grant you access: on their Consents page they choose your organisation, the records and the purpose."));
  const emergency = access ? access.emergency : Boolean(breakGlass);
  if (emergency && breakGlass) {
    const glass = h("button.btn.btn-danger-outline.btn-small", { type: "button" }, "Emergency access…");
    glass.addEventListener("click", () => breakGlass.click());
    steps.append(h("li", "In an emergency, when the patient cannot consent in time, you may use emergency access: it is logged, flagged and shown to the patient with your reason. ", glass));
  } else {
    steps.append(h("li", "Emergency access is not open to your organisation."));
  }
  return inlineMessage("error", "Access refused",
    h("p.refusal-detail", `You may not read this record for ${purposeLabel(purpose)}: ${detailOf(err) || "no consent covers it"}.`),
    h("h3.next-steps-title", "What you can do"), steps);
}
