// Who is signed in: the bearer token (sessionStorage) and the key that signs (memory,
// re-created on demand: demo keys from dev-accounts.js, saved keys after a passphrase,
// the injected EIP-1193 wallet, or the patient's passkeys (passkey.js), asked at each signature).
import { ethers } from "../vendor/ethers.min.js";

const TOKEN_KEY = "consentLedger.session";
const KEYS_KEY = "consentLedger.keys";
// Cost of the passphrase KDF for saved keys: OWASP's scrypt minimum (N = 2**17, r = 8, p = 1), about
// a second to unlock in a browser. Keys saved before at N = 2**14 still open (the keystore JSON carries
// its own parameters) and are saved again at this cost on their next unlock.
export const SCRYPT = Object.freeze({ N: 2 ** 17, r: 8, p: 1 });

const listeners = new Set();
let signer = null; // ethers Signer for the current session, when unlocked
let unlockPrompt = null; // set by the app: async (address) => passphrase | null

function load() {
  try { return JSON.parse(sessionStorage.getItem(TOKEN_KEY)) || null; } catch { return null; }
}

/** Normalise role names from the API ("provider", "PROVIDER_ROLE", "Provider") to "provider". */
export function normRole(r) {
  return String(r).toLowerCase().replace(/_role$/, "").replace(/^role_/, "");
}

export const session = {
  get data() { return load(); },
  get token() { const d = load(); return d && d.token; },
  get address() { const d = load(); return d && d.address; },
  get roles() {
    const d = load();
    if (!d) return [];
    const roles = (d.roles || []).map(normRole);
    // anyone may be a patient (patients hold no on-chain role)
    return ["patient", ...roles.filter((r) => r === "provider" || r === "auditor")];
  },
  get signerKind() { const d = load(); return d && d.signer && d.signer.kind; },
  get currentRole() { const d = load(); return d && d.role; },
  set currentRole(role) { const d = load(); if (d) { d.role = role; sessionStorage.setItem(TOKEN_KEY, JSON.stringify(d)); } },

  start(login, signerInfo, activeSigner) {
    const data = { token: login.token, address: ethers.getAddress(login.address), roles: login.roles || [], expiresAt: login.expiresAt, signer: signerInfo };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(data));
    signer = activeSigner;
    emit("signin");
  },
  end(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    forgetSigner();
    emit("signout", reason);
  },
  expired(problem) {
    sessionStorage.removeItem(TOKEN_KEY);
    forgetSigner();
    emit("expired", problem);
  },
  on(fn) { listeners.add(fn); return () => listeners.delete(fn); },
  setUnlockPrompt(fn) { unlockPrompt = fn; },

  /** The signer for the signed-in address, unlocking a saved key if needed. */
  async signer() {
    const d = load();
    if (!d) throw new Error("Not signed in");
    if (signer) return signer;
    const info = d.signer || {};
    if (info.kind === "demo") {
      const { DEV_ACCOUNTS } = await import("./dev-accounts.js");
      signer = new ethers.Wallet(DEV_ACCOUNTS[info.index].key);
    } else if (info.kind === "injected") {
      signer = await injectedSigner(d.address);
    } else if (info.kind === "passkey") {
      // the session's passkeys and any this browser learnt of since (a device added in this session)
      const { PasskeySigner, passkeyHints } = await import("./passkey.js");
      const hint = passkeyHints.get(d.address);
      const ids = new Set([...(info.credentialIds || []), ...(hint ? hint.credentials.map((c) => c.id) : [])]);
      signer = new PasskeySigner(d.address, [...ids]);
    } else if (info.kind === "keystore") {
      const saved = keystore.get(d.address);
      if (!saved) throw new Error("The key for this session is no longer saved in this browser. Sign in again.");
      if (!unlockPrompt) throw new Error("Key is locked");
      const w = await unlockPrompt(saved);
      if (!w) throw Object.assign(new Error("Signing cancelled: the key was not unlocked."), { title: "Key locked" });
      signer = w;
    } else {
      throw new Error("No key is available for this session. Sign in again.");
    }
    if (ethers.getAddress(await signer.getAddress()) !== d.address) {
      signer = null;
      throw new Error("The key does not match the signed-in address.");
    }
    return signer;
  },
};

// a passkey signer holds its last PRF output (the reading key's material) until sign-out
function forgetSigner() {
  if (signer && typeof signer.forget === "function") signer.forget();
  signer = null;
}

function emit(event, detail) { for (const fn of listeners) fn(event, detail); }

// ---------------------------------------------------------------- saved keys (localStorage)

export const keystore = {
  list() {
    try { return JSON.parse(localStorage.getItem(KEYS_KEY)) || []; } catch { return []; }
  },
  get(address) {
    return this.list().find((k) => k.address.toLowerCase() === String(address).toLowerCase()) || null;
  },
  /** Encrypt a wallet with the passphrase (scrypt keystore v3 at the SCRYPT cost) and save it. */
  async save(wallet, passphrase, label, createdAt) {
    const json = await ethers.encryptKeystoreJson(
      { address: wallet.address, privateKey: wallet.privateKey },
      passphrase,
      { scrypt: { ...SCRYPT } },
    );
    const entry = { address: wallet.address, label: label || "", json, createdAt: createdAt || new Date().toISOString() };
    const keys = this.list();
    const at = keys.findIndex((k) => k.address === wallet.address);
    if (at >= 0) keys[at] = entry; else keys.push(entry);
    localStorage.setItem(KEYS_KEY, JSON.stringify(keys));
    return entry;
  },
  /** Decrypt a saved key (with the KDF parameters its JSON names); re-save it if they are weaker than SCRYPT. */
  async unlock(entry, passphrase) {
    const wallet = await ethers.Wallet.fromEncryptedJson(entry.json, passphrase);
    if (weakerThanCurrent(entry.json)) {
      try {
        await this.save(wallet, passphrase, entry.label, entry.createdAt);
      } catch (e) {
        console.warn("The key opened but could not be saved again at the current cost:", e);
      }
    }
    return wallet;
  },
  remove(address) {
    localStorage.setItem(KEYS_KEY, JSON.stringify(this.list().filter((k) => k.address !== address)));
  },
};

function weakerThanCurrent(json) {
  try {
    const data = JSON.parse(json);
    const crypto = data.crypto || data.Crypto || {}; // ethers writes "Crypto", others "crypto"
    const kdf = crypto.kdfparams || {};
    return String(crypto.kdf).toLowerCase() !== "scrypt" || !(kdf.n >= SCRYPT.N && kdf.r >= SCRYPT.r && kdf.p >= SCRYPT.p);
  } catch {
    return false; // it just decrypted, so it parses; never block an unlock on this check
  }
}

export async function injectedSigner(expected) {
  if (!window.ethereum) throw new Error("No browser wallet (window.ethereum) is available.");
  const provider = new ethers.BrowserProvider(window.ethereum);
  await provider.send("eth_requestAccounts", []);
  return provider.getSigner(expected || undefined);
}
