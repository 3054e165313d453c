// The single-page app: hash routes (#/signin, #/patient/..., #/provider/..., #/auditor),
// a role switcher, and the session lifecycle.
import { api } from "./api.js";
import { session, keystore } from "./session.js";
import { h, field, modal, announce, clearAlert, clearStatus, showError, shortHex, copyText, visuallyHidden } from "./ui.js";
import * as signin from "./pages/signin.js";
import * as patient from "./pages/patient.js";
import * as provider from "./pages/provider.js";
import * as auditor from "./pages/auditor.js";
import * as ledger from "./pages/ledger.js";

const ROLE_LABELS = { patient: "Patient", provider: "Provider", auditor: "Auditor" };
const NAV = {
  patient: [
    ["#/patient/records", "My records"],
    ["#/patient/consents", "Consents"],
    ["#/patient/disclosures", "Disclosures"],
    ["#/patient/delegates", "Delegates"],
    ["#/patient/id", "Your patient ID"],
    ["#/patient/devices", "Passkeys", () => session.signerKind === "passkey"],
  ],
  provider: [
    ["#/provider/patients", "Find a patient"],
    ["#/provider/upload", "Upload a record"],
  ],
  auditor: [["#/auditor", "Verify"]],
};
const PAGES = { patient, provider, auditor };

function defaultRole() {
  const roles = session.roles;
  const cur = session.currentRole;
  if (cur && roles.includes(cur)) return cur;
  if (roles.includes("provider")) return "provider";
  if (roles.includes("auditor")) return "auditor";
  return "patient";
}

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}

let chain = null;
let renderToken = 0;

async function render() {
  const token = ++renderToken;
  const main = document.getElementById("main");
  const { parts, params } = parseRoute();
  const signedIn = Boolean(session.token);

  // the chain's details, for those who want them: open to everyone, signed in or not
  if (parts[0] === "ledger") {
    updateHeader(signedIn ? defaultRole() : null, "#/ledger");
    await mount(main, token, (view) => ledger.render(view, { chain }));
    return;
  }
  if (!signedIn || parts[0] === "signin") {
    if (signedIn && parts[0] === "signin") { location.replace(`#/${defaultRole()}`); return; }
    if (parts.length && parts[0] !== "signin") sessionStorage.setItem("consentLedger.after", location.hash);
    updateHeader(null);
    if (location.hash !== "#/signin") history.replaceState(null, "", "#/signin");
    document.title = "Sign in · Consent Ledger";
    await mount(main, token, (view) => signin.render(view, { chain }));
    return;
  }
  let role = parts[0];
  if (!PAGES[role] || !session.roles.includes(role)) {
    location.replace(`#/${defaultRole()}`);
    return;
  }
  session.currentRole = role;
  let section = parts[1];
  if (!section) section = NAV[role][0][0].split("/")[2] || "";
  updateHeader(role, `#/${role}${section ? `/${section}` : ""}`);
  await mount(main, token, (view) => PAGES[role].render(view, { chain, section, params, parts }));
}

/** Render a page into a detached view and swap it in only if no newer navigation happened. */
async function mount(main, token, fn) {
  clearAlert();
  // a message answers the page it was shown on: none lingers onto the next page or patient
  if (!keepStatus) clearStatus();
  keepStatus = false;
  main.replaceChildren(h("p.muted", { "aria-busy": "true" }, "Loading…"));
  const view = h("div.view");
  try {
    await fn(view);
  } catch (err) {
    if (token !== renderToken) return;
    view.replaceChildren(h("h1", { tabindex: "-1" }, "Could not load this page"));
    showError(err);
  }
  if (token !== renderToken) return;
  main.replaceChildren(view);
  const h1 = main.querySelector("h1");
  if (h1) {
    h1.setAttribute("tabindex", "-1");
    document.title = `${h1.textContent} · Consent Ledger`;
    if (!firstRender) h1.focus({ preventScroll: false });
  }
  firstRender = false;
}
let firstRender = true;
// set for the one navigation whose page should keep the status just announced (signing out)
let keepStatus = false;

function updateHeader(role, current) {
  const box = document.getElementById("session");
  const nav = document.getElementById("nav");
  if (!role) { box.hidden = true; nav.hidden = true; nav.replaceChildren(); return; }
  box.hidden = false;
  const addr = session.address;
  const chip = document.getElementById("session-address");
  chip.replaceChildren(visuallyHidden("Signed in as "), h("span", { "aria-hidden": "true" }, shortHex(addr, 6, 4)), visuallyHidden(addr));
  chip.title = addr;
  document.getElementById("copy-address").setAttribute("aria-label", `Copy your address ${addr}`);
  const select = document.getElementById("role-select");
  select.replaceChildren(...session.roles.map((r) => h("option", { value: r, selected: r === role }, ROLE_LABELS[r])));
  select.closest("label").hidden = session.roles.length < 2;
  nav.hidden = false;
  nav.setAttribute("aria-label", `${ROLE_LABELS[role]} sections`);
  const shown = NAV[role].filter(([, , when]) => !when || when());
  nav.replaceChildren(...shown.map(([href, label]) => h("a", { href, "aria-current": href === current ? "page" : null }, label)));
}

async function unlockPrompt(entry) {
  const pass = field("Passphrase", h("input", { type: "password", autocomplete: "current-password" }), { hint: `Unlock the key ${shortHex(entry.address)} to sign.` });
  const err = h("p.field-error", { role: "alert" });
  let wallet = null;
  const ok = await modal({
    title: "Unlock your key",
    content: h("div", pass.wrap, err),
    confirmLabel: "Unlock",
    busyLabel: "Unlocking…",
    busyNote: "Decrypting your key…",
    onConfirm: async () => {
      try {
        wallet = await keystore.unlock(entry, pass.input.value);
        return true;
      } catch {
        err.textContent = "That passphrase does not unlock this key.";
        pass.input.setAttribute("aria-invalid", "true");
        pass.input.focus();
        return undefined;
      }
    },
  });
  return ok ? wallet : null;
}

async function goSignin() {
  if (location.hash !== "#/signin") history.replaceState(null, "", "#/signin");
  await render();
}

export async function start() {
  session.setUnlockPrompt(unlockPrompt);
  document.getElementById("sign-out").addEventListener("click", () => {
    keepStatus = true;
    session.end();
    announce("You are signed out.");
  });
  document.getElementById("copy-address").addEventListener("click", async () => {
    const addr = session.address;
    if (addr && await copyText(addr)) announce("Address copied.");
    else if (addr) showError({ title: "Copy was refused", detail: `This browser did not allow copying. Your address is ${addr}.` });
  });
  document.getElementById("role-select").addEventListener("change", (e) => {
    location.hash = `#/${e.target.value}`;
  });
  session.on((event, detail) => {
    if (event === "signin") {
      const after = sessionStorage.getItem("consentLedger.after");
      sessionStorage.removeItem("consentLedger.after");
      const role = defaultRole();
      location.hash = after && after.startsWith(`#/${role}`) ? after : `#/${role}`;
    } else if (event === "signout") {
      goSignin();
    } else if (event === "expired") {
      goSignin().then(() => showError({ title: "Your session has ended", detail: `${(detail && detail.detail) || ""} Please sign in again.`.trim() }));
    }
  });
  window.addEventListener("hashchange", render);
  try {
    chain = await api.chain();
  } catch (err) {
    showError(err);
  }
  await render();
}
