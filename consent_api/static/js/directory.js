// The API of a provider's own patient directory (the node's: docs/architecture.md, "Patient directory"), and
// a guardian's list of the patients who named them.
import { request } from "./api.js";

const enc = encodeURIComponent;

export const directory = {
  // {patients: [{address, name, birthDate, mrn, updatedAt}]}: by name (part, any case), MRN or account
  find: (q) => request("GET", "/v1/directory/patients", { query: { q } }),
  // one entry, or null when this patient is not in the provider's directory
  get: async (address) => {
    try {
      return await request("GET", `/v1/directory/patients/${enc(address)}`);
    } catch (err) {
      if (err && err.status === 404) return null;
      throw err;
    }
  },
  put: (address, entry, key) => request("PUT", `/v1/directory/patients/${enc(address)}`, { json: entry, idempotencyKey: key }),
  remove: (address, key) => request("DELETE", `/v1/directory/patients/${enc(address)}`, { idempotencyKey: key }),
};

// {patients: [{patient, validUntil, live}]}: who named `delegate` their guardian
export const patientsNaming = (delegate) => request("GET", `/v1/delegates/${enc(delegate)}/patients`);
