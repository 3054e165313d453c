// Sign-in: demo accounts (dev chain only), saved keys, a new key, an imported key, or a browser wallet.
import { ethers } from "../../vendor/ethers.min.js";
import { api } from "../api.js";
import { session, keystore, injectedSigner } from "../session.js";
import { siweMessage } from "../signing.js";
import { h, field, setFieldError, singleFlight, announce, shortHex, modal } from "../ui.js";
import { isDevChain } from "../dev-accounts.js";

/** SIWE: nonce → EIP-4361 message → personal_sign → POST /v1/auth/login (with the action's idempotency key). */
export async function signInWith(signer, signerInfo, chain, key) {
  const address = ethers.getAddress(await signer.getAddress());
  const { nonce } = await api.authNonce();
  const message = siweMessage({ address, chainId: chain.chainId, nonce });
  const signature = await signer.signMessage(message);
  const login = await api.login(message, signature, key);
  session.start(login, signerInfo, signer);
  announce(`Signed in as ${shortHex(login.address)}.`);
  return login;
}

function needChain(chain) {
  if (!chain) throw { title: "The ledger is not reachable", detail: "GET /v1/chain failed; reload the page when the service is running." };
}

export async function render(main, { chain }) {
  const parts = [
    h("h1", "Sign in to Consent Ledger"),
    h("p.muted", "Your key stays in this browser. You sign a one-time sign-in message with it; no password is sent to the server."),
  ];
  if (isDevChain(chain)) parts.push(await demoPanel(chain));
  parts.push(h("div.grid", savedKeysCard(chain), newKeyCard(chain), importCard(chain), walletCard(chain)));
  main.replaceChildren(...parts);
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
    const btn = h("button.btn.btn-secondary", { type: "button", "data-demo-index": acct.index },
      h("span", `#${acct.index} ${name}`), h("small", `${roleText} · ${shortHex(wallet.address, 6, 4)}`));
    btn.setAttribute("aria-label", `Sign in as demo ${roleText} ${name} (account #${acct.index}, ${wallet.address})`);
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
    const btn = h("button.btn.btn-small", { type: "button" }, "Sign in");
    btn.setAttribute("aria-label", `Sign in with ${entry.label || "key"} ${entry.address}`);
    btn.addEventListener("click", () => singleFlight(btn, "Signing in…", async (flight) => {
      needChain(chain);
      const wallet = await unlockWithPrompt(entry);
      if (wallet) await signInWith(wallet, { kind: "keystore" }, chain, flight.key);
    }, { note: "Unlocking your key and checking your signature…" }));
    const backup = h("a.btn.btn-quiet.btn-small", {
      href: URL.createObjectURL(new Blob([entry.json], { type: "application/json" })),
      download: `consent-ledger-key-${entry.address}.json`,
      "aria-label": `Download encrypted backup of ${entry.address}`,
    }, "Backup");
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
    card.append(h("p.muted", "No browser wallet was detected. If you use one (an EIP-1193 wallet extension), enable it and reload this page."));
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
