"""Rate limits on the routes anyone may call at a cost to the service, and the relay's own threads.

Sign-in (``/v1/auth/nonce``, ``/v1/auth/login``) and the relayed messages (grant, revoke,
delegate) need no account, and each relayed message is a transaction the relayer pays for and
waits on for seconds. So (docs/operations.md, "Rate limits"):

* each is counted per client address (and a relayed message also per signer) and for all
  clients together, in moving windows (the ``limits`` library, in memory: each API process counts
  its own); over a limit the answer is 429 ``rate-limited`` with ``Retry-After``;
* relays run on threads of their own, at most ``relay_concurrency`` at once; one more is answered
  503 ``relay-busy`` at once instead of waiting, so a flood of relays never holds the threads the
  other routes (reads, health) run on.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ledger_service.domain.consent import SignedMessage
from ledger_service.errors import RateLimited, RelayBusy
from ledger_service.records.relaying import RelayOutcome
from ledger_service.settings import Settings

M = TypeVar("M", bound=SignedMessage)
T = TypeVar("T")

# A relay slot frees when a transaction's receipt arrives: about one block.
RELAY_BUSY_RETRY_AFTER = 2

# The refusals, for the OpenAPI of the limited routes (the body is problem+json).
LIMITED: dict[int | str, dict[str, object]] = {
    429: {"description": "Rate limited (`/problems/rate-limited`); retry after `Retry-After` seconds"}
}
RELAY_LIMITED: dict[int | str, dict[str, object]] = {
    **LIMITED,
    503: {"description": "Every relay slot is busy (`/problems/relay-busy`); retry after `Retry-After` seconds"},
}


@dataclass(frozen=True)
class RouteLimits:
    """The limits of one family of routes, counted together."""

    name: str
    per_client: RateLimitItem
    overall: RateLimitItem
    per_signer: RateLimitItem | None = None


class RelaySlots:
    """At most ``slots`` relays in flight, on threads other than the shared pool's; no waiting line."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._admitted = anyio.CapacityLimiter(slots)
        # The threads the admitted relays run on; never short, since admission comes first.
        self._threads = anyio.CapacityLimiter(slots)

    async def run(self, work: Callable[..., T], *args: object) -> T:
        ticket = object()
        try:
            self._admitted.acquire_on_behalf_of_nowait(ticket)
        except anyio.WouldBlock:
            raise RelayBusy(
                f"all {self.slots} relay slots are waiting for their transactions; retry shortly",
                retry_after=RELAY_BUSY_RETRY_AFTER,
            ) from None
        try:
            return await anyio.to_thread.run_sync(functools.partial(work, *args), limiter=self._threads)
        finally:
            self._admitted.release_on_behalf_of(ticket)


class Throttle:
    """This API process's request counters and relay slots."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.sign_in = RouteLimits("sign-in", parse(settings.auth_rate_limit), parse(settings.auth_rate_limit_global))
        self.relay = RouteLimits(
            "relay",
            parse(settings.relay_rate_limit),
            parse(settings.relay_rate_limit_global),
            parse(settings.relay_rate_limit_per_signer),
        )
        self.relay_slots = RelaySlots(settings.relay_concurrency)

    def admit(self, limits: RouteLimits, client: str) -> None:
        """Count one request of ``client``, or raise RateLimited.

        The overall window is looked at first and counted last: once it is full nothing is
        stored per client (a crowd of addresses cannot grow the counters), and a client over its
        own limit does not use up everyone's.
        """
        everyone = (limits.name, "all")
        if not self._limiter.test(limits.overall, *everyone):
            self._refuse(
                limits.overall,
                everyone,
                f"{limits.name} requests are limited to {limits.overall} for all clients together",
            )
        mine = (limits.name, "client", client)
        if not self._limiter.hit(limits.per_client, *mine):
            self._refuse(
                limits.per_client, mine, f"{limits.name} requests are limited to {limits.per_client} per client"
            )
        if not self._limiter.hit(limits.overall, *everyone):
            self._refuse(
                limits.overall,
                everyone,
                f"{limits.name} requests are limited to {limits.overall} for all clients together",
            )

    def admit_signer(self, limits: RouteLimits, signer: str) -> None:
        """Count one message signed by ``signer`` (a recovered address, so nobody spends another's)."""
        if limits.per_signer is None:
            return
        key = (limits.name, "signer", signer)
        if not self._limiter.hit(limits.per_signer, *key):
            self._refuse(
                limits.per_signer, key, f"{limits.name} messages are limited to {limits.per_signer} per signer"
            )

    def _refuse(self, item: RateLimitItem, key: tuple[str, ...], what: str) -> None:
        reset = self._limiter.get_window_stats(item, *key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"{what}; retry in {retry_after} s", retry_after=retry_after)


def throttle_of(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


def client_of(request: Request) -> str:
    """The client's address as the server sees it (the proxy's own unless it is a trusted proxy)."""
    return request.client.host if request.client else "unknown"


async def limit_sign_in(request: Request) -> None:
    """Dependency of the sign-in routes; async, so a refusal never waits for a worker thread."""
    throttle = throttle_of(request)
    throttle.admit(throttle.sign_in, client_of(request))


async def relay(
    request: Request, work: Callable[[M, bytes], RelayOutcome], message: M, signature: bytes
) -> RelayOutcome:
    """Admit a signed message (per client, per signer, overall), then relay it on a relay slot."""
    throttle = throttle_of(request)
    throttle.admit(throttle.relay, client_of(request))
    signer = request.app.state.services.hub_relay.signer_of(message, signature)
    if signer is not None:  # a bad signature is refused by the relay itself, before any transaction
        throttle.admit_signer(throttle.relay, signer)
    return await throttle.relay_slots.run(work, message, signature)
