// The patient's landing page announces each emergency access to their records that they have not reviewed
// yet (docs/architecture.md, "The path of a read"): who read, when and the reason they gave, with two ways to
// respond: mark it reviewed (kept by the service, so it is not shown again) or contact the clinic.
import { api } from "./api.js";
import { h, announce, fmtDate, inlineMessage, placeMessage, singleFlight, visuallyHidden } from "./ui.js";

/** The notice for `patient` (null when there is nothing to review, or the history cannot be read now). */
export async function emergencyNotice(patient, { self = true } = {}) {
  let list;
  try {
    ({ disclosures: list } = await api.disclosures(patient));
  } catch {
    return null; // the landing page still opens; the history page shows the error
  }
  const open = (list || []).filter((d) => d.emergency && !d.reviewedAt && d.disclosureId);
  if (!open.length) return null;
  const your = self ? "your" : "the patient's";
  const heading = h("h2#emergency-h", open.length === 1
    ? `Someone used emergency access to ${your} records`
    : `${open.length} emergency accesses to ${your} records`);
  const items = h("ul.emergency-list");
  const box = h("section.card.emergency-notice#emergency-notice", { "aria-labelledby": "emergency-h", tabindex: "-1" },
    heading,
    h("p", "In an emergency a clinic may read a record without consent, but must give a reason. Check that this was right."),
    items);
  const left = () => items.querySelectorAll("li").length;
  for (const d of open) items.append(item(d, patient, self, () => {
    if (left()) { heading.textContent = left() === 1 ? `Someone used emergency access to ${your} records` : `${left()} emergency accesses to ${your} records`; items.querySelector("li button").focus(); return; }
    box.replaceChildren(inlineMessage("ok", "All reviewed", h("p", "Every emergency access is marked as reviewed. You can still see them on \u201cWho has seen my records\u201d.")));
    box.firstChild.focus();
  }));
  return box;
}

function item(d, patient, self, after) {
  const who = d.accessorName || "A clinic";
  const when = fmtDate(d.timestamp);
  const review = h("button.btn.btn-small", { type: "button" }, "Mark as reviewed", visuallyHidden(`: ${who}, ${when}`));
  const contact = h("button.btn.btn-secondary.btn-small", { type: "button", "aria-expanded": "false" }, "Contact the clinic", visuallyHidden(`: ${who}`));
  const slot = h("div.row-message", { hidden: true });
  const help = h("div.contact-help", { hidden: true },
    h("p", `Contact ${who} (their reception or patient services) and ask:`),
    h("ul",
      h("li", `who read ${self ? "your" : "the"} record on ${when}, and why it was an emergency;`),
      h("li", "what they did with the information, and whether it was shared further;"),
      h("li", "how to complain if the access was not justified.")),
    h("p.muted.small", "Give them the date and time above. Once you are satisfied, mark it as reviewed."));
  contact.addEventListener("click", () => {
    help.hidden = !help.hidden;
    contact.setAttribute("aria-expanded", String(!help.hidden));
  });
  const li = h("li",
    h("p", h("strong", who), ` read ${self ? "one of your" : "one of the patient's"} records on ${when}, without consent, saying it was an emergency.`),
    d.reason ? h("p", "Reason given: ", h("q", d.reason)) : null,
    h("div.actions", review, contact), slot, help);
  review.addEventListener("click", () => singleFlight(review, "Saving…", async (flight) => {
    await api.reviewEmergency(patient, d.disclosureId, flight.key);
    li.remove();
    announce(`Marked as reviewed: ${who}'s emergency access on ${when}.`);
    after();
  }, {
    note: "Saving…",
    onError: (err) => placeMessage(slot, inlineMessage("error", "Not saved",
      h("p", [err && err.title, err && err.detail].filter(Boolean).join(": ") || "Something went wrong."),
      h("p", "Try again in a moment."))),
  }));
  return li;
}
