// Sign-in: a passkey first (patients), then demo accounts (dev chain only), saved keys, a new key, an
// imported key, or a browser wallet.
import { ethers } from "../../vendor/ethers.min.js";
import { api, idempotencyKey } from "../api.js";
import { session, keystore, injectedSigner } from "../session.js";
import { siweMessage } from "../signing.js";
import { h, field, setFieldError, singleFlight, announce, shortHex, modal, visuallyHidden } from "../ui.js";
import { isDevChain } from "../dev-accounts.js";
import {
  PasskeySigner, createPasskey, discoverAccount, firstPasskeyUserId, passkeyHints, passkeySupport, predictAccount,
} from "../passkey.js";

/**
 * SIWE: nonce → EIP-4361 message → the signer signs it (personal_sign, or a passkey assertion over its EIP-191
 * hash) → POST /v1/auth/login (with the action's idempotency key).
 */
export async function signInWith(signer, signerInfo, chain, key) {
  const address = ethers.getAddress(await signer.getAddress());
  const { nonce } = await api.authNonce();
  const message = siweMessage({ address, chainId: chain.chainId, nonce });
  const signature = await signer.signMessage(message);
  const login = await api.login(message, signature, key);
  session.start(login, typeof signer.sessionInfo === "function" ? signer.sessionInfo() : signerInfo, signer);
  announce(`Signed in as ${shortHex(login.address)}.`);
  return login;
}

function needChain(chain) {
  if (!chain) throw { title: "The ledger is not reachable", detail: "GET /v1/chain failed; reload the page when the service is running." };
}

export async function render(main, { chain }) {
  const parts = [h("h1", "Sign in to Consent Ledger"), passkeyCard(chain)];
  if (isDevChain(chain)) parts.push(await demoPanel(chain));
  parts.push(
    h("h2.section-title#other-title", "Other ways to sign in"),
    h("p.muted", "With an Ethereum key instead of a passkey. Your key stays in this browser. You sign a one-time sign-in message with it; no password is sent to the server."),
    h("div.grid", { "aria-labelledby": "other-title", role: "group" }, savedKeysCard(chain), newKeyCard(chain), importCard(chain), walletCard(chain)));
  main.replaceChildren(...parts);
}

// ---------------------------------------------------------------- passkeys

function needPasskeys(chain) {
  needChain(chain);
  if (!chain.contracts || !chain.contracts.PatientAccountFactory) {
    throw { title: "Passkeys are not available here", detail: "This ledger has no passkey accounts. Use one of the other ways to sign in below." };
  }
}

/** Why this page cannot use passkeys, in plain words, with the link that fixes it when there is one. */
function passkeyUnavailable(support) {
  if (support.reason === "ip") {
    return h("div.warning-box#passkey-note", { role: "note" },
      h("p", h("strong", "Passkeys need the portal's name, not its number.")),
      h("p", "This page is open at a numeric address, where browsers do not allow passkeys."),
      support.localhost
        ? h("p", h("a#passkey-localhost", { href: support.localhost }, "Open this page at localhost"), " and sign in there.")
        : h("p", "Open the portal at its name (the address your clinic gave you)."));
  }
  if (support.reason === "insecure") {
    return h("div.warning-box#passkey-note", { role: "note" },
      h("p", h("strong", "Passkeys need a secure connection.")),
      h("p", "Open the portal at its https:// address."));
  }
  return h("div.warning-box#passkey-note", { role: "note" },
    h("p", h("strong", "This browser cannot use passkeys.")),
    h("p", "Update it, or use another browser or device."));
}

function passkeyCard(chain) {
  const card = h("section.card.passkeys", { "aria-labelledby": "passkey-title" },
    h("h2#passkey-title", "Patients: use a passkey"),
    h("p", "A passkey is your device's screen lock (fingerprint, face or PIN) used to sign in. Nothing to remember, nothing secret sent anywhere."));
  const support = passkeySupport();
  if (!support.ok) {
    card.append(passkeyUnavailable(support));
    return card;
  }
  const hint = passkeyHints.list()[0];
  const actions = h("div.actions");
  const signIn = h(`button.btn${hint ? "" : ".btn-secondary"}#passkey-sign-in`, { type: "button" }, "Sign in with a passkey");
  signIn.addEventListener("click", () => singleFlight(signIn, "Waiting for your passkey…", async (flight) => {
    needPasskeys(chain);
    await passkeySignIn(chain, hint, flight);
  }, { note: hint ? "Confirm with your passkey." : "Choose your passkey, then confirm once more to sign in." }));
  const create = h(`button.btn${hint ? ".btn-secondary" : ""}#passkey-create`, { type: "button" }, "Create an account with a passkey");
  create.addEventListener("click", () => createAccountDialog(chain));
  if (hint) {
    actions.append(signIn, create);
    card.append(h("p.small.muted", "Last used here: account ", h("span.mono", shortHex(hint.address)), "."), actions);
    const other = h("button.btn.btn-quiet.btn-small#passkey-other", { type: "button" }, "Use a passkey of another account");
    other.addEventListener("click", () => singleFlight(other, "Waiting for your passkey…", async (flight) => {
      needPasskeys(chain);
      await passkeySignIn(chain, null, flight);
    }, { note: "Choose your passkey, then confirm once more to sign in." }));
    card.append(h("div.actions", other));
  } else {
    actions.append(create, signIn);
    card.append(actions, h("p.small.muted", "New here? Create an account. Already have one on another device or in your phone's passkeys? Sign in."));
  }
  return card;
}

/**
 * Sign in with a passkey: with a hint, one prompt (the sign-in message, by this account's known passkeys);
 * without, the authenticator first says which account it holds (discoverAccount), then signs the message.
 */
async function passkeySignIn(chain, hint, flight) {
  let signer;
  if (hint) {
    signer = new PasskeySigner(hint.address, hint.credentials.map((c) => c.id));
  } else {
    const found = await discoverAccount(chain);
    signer = new PasskeySigner(found.address, [found.credentialId]);
    signer.keepPrf(found.credentialId, found.prfOutput);
    flight.step("Confirm once more…");
  }
  await signInWith(signer, null, chain, flight.key);
  passkeyHints.remember(signer.address, { id: signer.lastCredentialId }, { prf: signer.prfSeen });
}

function createAccountDialog(chain) {
  const name = field("Your name on this passkey (optional)", h("input", { type: "text", autocomplete: "name", maxlength: "64" }),
    { hint: "Shown only in your device's list of passkeys, to tell them apart." });
  return modal({
    title: "Create your account",
    content: h("div",
      h("p", "Your device will ask you to make a passkey for Consent Ledger, with your fingerprint, face or PIN. Then confirm once more to sign in."),
      h("p.small.muted", "Your account is created on the ledger. Nothing secret leaves your device; this browser only remembers which account is yours."),
      name.wrap),
    confirmLabel: "Create my passkey",
    busyLabel: "Waiting for your passkey…",
    busyNote: "Follow your device's prompts.",
    onConfirm: async (flight) => {
      needPasskeys(chain);
      const created = await createPasskey({ userId: firstPasskeyUserId(), name: name.input.value.trim() });
      flight.step("Creating your account…");
      const account = await api.createAccount(created.publicKey, flight.key);
      const address = ethers.getAddress(account.address);
      // A browser with no hint finds this account again by predicting it from the key (discoverAccount).
      if (predictAccount(chain.contracts.PatientAccountFactory, created.publicKey) !== address) {
        console.warn("The account address the hub gave differs from the one this page predicts; signing in on a new browser may not find it.");
      }
      passkeyHints.remember(address, { id: created.credentialId, ...created.publicKey }, { prf: created.prf });
      flight.step("Confirm to sign in…");
      const signer = new PasskeySigner(address, [created.credentialId]);
      await signInWith(signer, null, chain, idempotencyKey());
      passkeyHints.remember(address, null, { prf: signer.prfSeen ?? created.prf });
      return true;
    },
  });
}

async function demoPanel(chain) {
  const { DEV_ACCOUNTS } = await import("../dev-accounts.js");
  const demo = chain.demo || {};
  const names = {};
  for (const p of demo.providers || []) names[p.address.toLowerCase()] = p.name;
  const list = h("ul.demo-list");
  for (const acct of DEV_ACCOUNTS.filter((a) => a.index >= 1)) {
    const wallet = new ethers.Wallet(acct.key);
    const name = names[wallet.address.toLowerCase()] || acct.label;
    const roleText = acct.role === "provider" ? "provider" : acct.role;
    // its accessible name is its visible text, then what it does (WCAG 2.5.3, label in name)
    const btn = h("button.btn.btn-secondary", { type: "button", "data-demo-index": acct.index },
      h("span", `#${acct.index} ${name}`), h("small", `${roleText} · ${shortHex(wallet.address, 6, 4)}`),
      visuallyHidden(`: sign in as this demo ${roleText}`));
    btn.addEventListener("click", () => singleFlight(btn, "Signing in…", (flight) => signInWith(wallet, { kind: "demo", index: acct.index }, chain, flight.key), { note: "Checking your signature…" }));
    list.append(h("li", btn));
  }
  return h("section.card.demo", { "aria-labelledby": "demo-title" },
    h("h2#demo-title", "Demo accounts (dev chain only)", h("span.badge-dev", "dev chain")),
    h("p.small", "This is a local development chain (chain id 31337). These are anvil's public test keys — anyone can use them. Never use them for real data."),
    list);
}

function savedKeysCard(chain) {
  const keys = keystore.list();
  const card = h("section.card", { "aria-labelledby": "saved-title" }, h("h2#saved-title", "Your saved keys"));
  if (!keys.length) {
    card.append(h("p.empty", "No key is saved in this browser yet. Create or import one."));
    return card;
  }
  const list = h("ul.key-list");
  for (const entry of keys) {
    const btn = h("button.btn.btn-small", { type: "button" }, "Sign in", visuallyHidden(` with ${entry.label || "key"} ${entry.address}`));
    btn.addEventListener("click", () => singleFlight(btn, "Signing in…", async (flight) => {
      needChain(chain);
      const wallet = await unlockWithPrompt(entry);
      if (wallet) await signInWith(wallet, { kind: "keystore" }, chain, flight.key);
    }, { note: "Unlocking your key and checking your signature…" }));
    const backup = h("a.btn.btn-quiet.btn-small", {
      href: URL.createObjectURL(new Blob([entry.json], { type: "application/json" })),
      download: `consent-ledger-key-${entry.address}.json`,
    }, "Backup", visuallyHidden(` (encrypted) of ${entry.address}`));
    list.append(h("li", h("div", h("strong", entry.label || "Key"), h("div.mono.small", entry.address)), h("div.actions", btn, backup)));
  }
  card.append(list);
  return card;
}

async function unlockWithPrompt(entry) {
  const pass = field("Passphrase", h("input", { type: "password", autocomplete: "current-password" }));
  const err = h("p.field-error", { role: "alert" });
  let wallet = null;
  const ok = await modal({
    title: `Unlock ${entry.label || "your key"}`,
    content: h("div", h("p.mono.small", entry.address), pass.wrap, err),
    confirmLabel: "Unlock and sign in",
    busyLabel: "Unlocking…",
    busyNote: "Decrypting your key…",
    onConfirm: async () => {
      try { wallet = await keystore.unlock(entry, pass.input.value); return true; } catch {
        err.textContent = "That passphrase does not unlock this key.";
        pass.input.setAttribute("aria-invalid", "true");
        pass.input.focus();
        return undefined;
      }
    },
  });
  return ok ? wallet : null;
}

function passphraseFields() {
  const pass = field("Passphrase", h("input", { type: "password", autocomplete: "new-password", minlength: "8" }), { required: true, hint: "At least 8 characters. It encrypts the key in this browser; it cannot be recovered." });
  const confirm = field("Repeat passphrase", h("input", { type: "password", autocomplete: "new-password" }), { required: true });
  const check = () => {
    setFieldError(pass, pass.input.value.length < 8 ? "Use at least 8 characters." : "");
    setFieldError(confirm, confirm.input.value !== pass.input.value ? "The passphrases do not match." : "");
    if (pass.input.value.length < 8) { pass.input.focus(); return false; }
    if (confirm.input.value !== pass.input.value) { confirm.input.focus(); return false; }
    return true;
  };
  return { pass, confirm, check };
}

function newKeyCard(chain) {
  const label = field("Name for this key (optional)", h("input", { type: "text", autocomplete: "off", placeholder: "e.g. My health key" }), { hint: "Shown only in this browser." });
  const pp = passphraseFields();
  const submit = h("button.btn", { type: "submit" }, "Create key and sign in");
  const form = h("form#new-key-form", { novalidate: true }, label.wrap, pp.pass.wrap, pp.confirm.wrap, h("div.actions", submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!pp.check()) return;
    singleFlight(submit, "Creating key…", async (flight) => {
      needChain(chain);
      const wallet = ethers.Wallet.createRandom();
      await keystore.save(wallet, pp.pass.input.value, label.input.value.trim());
      flight.step("Signing in…");
      await signInWith(wallet, { kind: "keystore" }, chain, flight.key);
    }, { note: "Encrypting your key in this browser…" });
  });
  return h("section.card", { "aria-labelledby": "new-title" }, h("h2#new-title", "Create a new key"), form);
}

function importCard(chain) {
  const key = field("Private key", h("input", { type: "password", autocomplete: "off", spellcheck: "false" }), { required: true, hint: "64 hexadecimal characters, with or without 0x." });
  const label = field("Name for this key (optional)", h("input", { type: "text", autocomplete: "off" }));
  const pp = passphraseFields();
  const submit = h("button.btn", { type: "submit" }, "Import key and sign in");
  const form = h("form#import-form", { novalidate: true }, key.wrap, label.wrap, pp.pass.wrap, pp.confirm.wrap, h("div.actions", submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    let raw = key.input.value.trim();
    if (/^[0-9a-fA-F]{64}$/.test(raw)) raw = `0x${raw}`;
    let wallet;
    try { wallet = new ethers.Wallet(raw); setFieldError(key, ""); } catch {
      setFieldError(key, "This is not a valid private key.");
      key.input.focus();
      return;
    }
    if (!pp.check()) return;
    singleFlight(submit, "Importing…", async (flight) => {
      needChain(chain);
      await keystore.save(wallet, pp.pass.input.value, label.input.value.trim());
      key.input.value = "";
      flight.step("Signing in…");
      await signInWith(wallet, { kind: "keystore" }, chain, flight.key);
    }, { note: "Encrypting your key in this browser…" });
  });
  return h("section.card", { "aria-labelledby": "import-title" }, h("h2#import-title", "Import a private key"), form);
}

function walletCard(chain) {
  const card = h("section.card", { "aria-labelledby": "wallet-title" }, h("h2#wallet-title", "Browser wallet"));
  if (!window.ethereum) {
    card.append(h("p.muted", "No browser wallet was detected. If you use a wallet extension in this browser, enable it and reload this page."));
    return card;
  }
  const btn = h("button.btn", { type: "button" }, "Sign in with browser wallet");
  btn.addEventListener("click", () => singleFlight(btn, "Waiting for the wallet…", async (flight) => {
    needChain(chain);
    const signer = await injectedSigner();
    await signInWith(signer, { kind: "injected" }, chain, flight.key);
  }, { note: "Approve the sign-in message in your wallet." }));
  card.append(h("p.muted", "Your wallet will ask you to approve a sign-in message."), h("div.actions", btn));
  return card;
}
