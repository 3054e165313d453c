"""Who is who on the ledger: provider names and roles, read from chain events and views."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from eth_utils import to_checksum_address

from ledger_service.chain.ledger import ConsentLedgerContract


@dataclass(frozen=True)
class ProviderEntry:
    address: str
    name: str
    emergency: bool
    suspended: bool
    active: bool


class Directory:
    def __init__(self, ledger: ConsentLedgerContract, from_block: int) -> None:
        self.ledger = ledger
        self.from_block = from_block
        self._names: dict[str, str] = {}
        self._scanned_to = from_block - 1
        self._lock = threading.Lock()

    def _scan(self) -> None:
        head = self.ledger.block_number()
        with self._lock:
            if head <= self._scanned_to:
                return
            for event in self.ledger.events_between("ProviderOnboarded", self._scanned_to + 1, head):
                self._names[to_checksum_address(event.args["provider"])] = str(event.args["name"])
            self._scanned_to = head

    def providers(self) -> list[ProviderEntry]:
        self._scan()
        entries = []
        for address, name in sorted(self._names.items(), key=lambda kv: kv[1].lower()):
            roles = self.ledger.roles_of(address)
            entries.append(
                ProviderEntry(
                    address=address,
                    name=name,
                    emergency="emergency" in roles,
                    suspended="suspended" in roles,
                    active="provider" in roles and "suspended" not in roles,
                )
            )
        return entries

    def name_of(self, address: str) -> str | None:
        address = to_checksum_address(address)
        if address not in self._names:
            self._scan()
        return self._names.get(address)
