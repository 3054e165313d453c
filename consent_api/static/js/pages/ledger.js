// The Ledger page: the chain and contracts this portal records consents and reads on, its EIP-712 signing
// domain and the key custodians (GET /v1/chain), for those who want to check them (docs/architecture.md).
// The other pages keep these details out of the way.
import { api } from "../api.js";
import { h, table, categoryLabel, purposeLabel } from "../ui.js";

const mono = (v) => h("span.mono.break", v === undefined || v === null ? "—" : String(v));

export async function render(main) {
  const chain = await api.chain(true);
  const d = chain.deployment || {};
  const dom = chain.eip712Domain || {};
  const contracts = Object.entries(chain.contracts || {});
  const custody = chain.custody;
  main.replaceChildren(
    h("h1", "Ledger"),
    h("p", "Every consent, every change to one and every read of a record is written to a shared, append-only ledger (a blockchain) that nobody can edit afterwards, not even the people who run this service. These are the details to check it independently."),
    h("section.card", { "aria-labelledby": "ledger-chain-h" },
      h("h2#ledger-chain-h", "Chain"),
      h("dl.kv",
        h("dt", "Chain id"), h("dd", mono(chain.chainId)),
        h("dt", "Latest block"), h("dd", mono(chain.blockNumber)),
        h("dt", "Deployed in block"), h("dd", mono(d.blockNumber)),
        h("dt", "Deployment transaction"), h("dd", mono(d.txHash)),
        h("dt", "Ledger version"), h("dd", mono(d.ledgerVersion)),
        h("dt", "Contract code hash"), h("dd", mono(d.codeHash)))),
    h("section.card", { "aria-labelledby": "ledger-contracts-h" },
      h("h2#ledger-contracts-h", "Contracts"),
      table([{ label: "Contract", cell: ([name]) => name }, { label: "Address", cell: ([, addr]) => mono(addr) }], contracts,
        { empty: "No contract is listed." })),
    h("section.card", { "aria-labelledby": "ledger-domain-h" },
      h("h2#ledger-domain-h", "Signing domain (EIP-712)"),
      h("p.muted.small", "Consents, revocations and erasures are signed by the patient as typed data under this domain."),
      h("dl.kv",
        h("dt", "Name"), h("dd", mono(dom.name)),
        h("dt", "Version"), h("dd", mono(dom.version)),
        h("dt", "Chain id"), h("dd", mono(dom.chainId)),
        h("dt", "Verifying contract"), h("dd", mono(dom.verifyingContract)))),
    h("section.card", { "aria-labelledby": "ledger-custody-h" },
      h("h2#ledger-custody-h", "Key custodians"),
      custody
        ? [h("p", `A record's key is split between ${custody.custodians.length} custodians; any ${custody.threshold} of them are needed to open it.`),
          table([
            { label: "Custodian", cell: (c) => String(c.index) },
            { label: "Address", cell: (c) => mono(c.url) },
            { label: "Public key", cell: (c) => mono(c.publicKey) },
          ], custody.custodians)]
        : h("p", "This installation keeps record keys without separate custodians.")),
    h("section.card", { "aria-labelledby": "ledger-codes-h" },
      h("h2#ledger-codes-h", "Codes"),
      h("dl.kv",
        h("dt", "Purposes of use"), h("dd", (chain.purposes || []).map(purposeLabel).join(", ")),
        h("dt", "Record categories"), h("dd", Object.keys(chain.categories || {}).map(categoryLabel).join(", ")))));
}
