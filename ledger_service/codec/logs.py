"""Decoding the ledger's logs by slicing their fixed ABI layouts, for reading a whole history quickly.

:meth:`ContractCodec.decode_log` runs eth-abi and checksums every address it meets (a keccak each): most
of the time of reading a long trail. Every ledger event but the two with a ``string`` has a layout of
32-byte words (``bytes32``, ``address``, ``uintN``, ``bool``) plus at most one ``bytes``, so
:class:`FastLogDecoder` decodes those by slicing, with checksummed addresses cached. It yields exactly
what ``decode_log`` yields (proven by tests over every event); anything it does not handle plainly (an
event with a ``string``, a non-canonical encoding eth-abi would reject or read otherwise, a log of
another shape) goes to ``decode_log`` itself, so results and errors stay the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ledger_service.codec.abi import AbiEvent, ContractCodec, DecodedEvent
from ledger_service.codec.primitives import ZERO32, checksum_address, hex_to_bytes

_ZERO12: Final = b"\x00" * 12


_MISSING: Final = object()
_TOPIC_CACHE: Final = 1 << 16


class _Bad(Exception):
    """The word is not the canonical encoding of its type: let eth-abi decide."""


# One word decoder per static ABI type: bytes32 -> bytes, address -> checksummed str, uintN -> int, bool -> bool.
WordDecoder = Callable[[bytes], Any]


def _bytes32(word: bytes) -> bytes:
    return word


def _address(word: bytes) -> str:
    if word[:12] != _ZERO12:
        raise _Bad
    return checksum_address(word[12:])


def _uint(bits: int) -> WordDecoder:
    bound = 1 << bits

    def decode(word: bytes) -> int:
        value = int.from_bytes(word, "big")
        if value >= bound:
            raise _Bad
        return value

    return decode


def _bool(word: bytes) -> bool:
    if word == ZERO32:
        return False
    if word[:31] == ZERO32[:31] and word[31] == 1:
        return True
    raise _Bad


def _word_decoder(abi_type: str) -> WordDecoder | None:
    if abi_type == "bytes32":
        return _bytes32
    if abi_type == "address":
        return _address
    if abi_type == "bool":
        return _bool
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:] or "256")
        if bits % 8 == 0 and 8 <= bits <= 256:
            return _uint(bits)
    return None


class _EventLayout:
    """One event's topics and data words, with at most one dynamic ``bytes`` among the data."""

    def __init__(self, event: AbiEvent) -> None:
        self.name = event.name
        self.topics: list[tuple[str, WordDecoder]] = []
        self.words: list[tuple[str, WordDecoder | None]] = []  # None: the ``bytes`` argument's offset word
        self.ok = True
        for name, abi_type in event.indexed:
            decoder = _word_decoder(abi_type)
            if decoder is None:
                self.ok = False
            else:
                self.topics.append((name, decoder))
        dynamic = 0
        for name, abi_type in event.data:
            if abi_type == "bytes":
                dynamic += 1
                self.words.append((name, None))
                continue
            decoder = _word_decoder(abi_type)
            if decoder is None:
                self.ok = False
            else:
                self.words.append((name, decoder))
        if dynamic > 1:
            self.ok = False
        self.head = 32 * len(self.words)
        self.dynamic = dynamic == 1

    def args(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        """The event's arguments, as ``decode_log`` returns them; raises :class:`_Bad` when not plain."""
        if len(topics) != len(self.topics) + 1:
            raise _Bad
        args: dict[str, Any] = {}
        for (name, decode), topic in zip(self.topics, topics[1:], strict=True):
            if len(topic) != 32:
                raise _Bad
            args[name] = decode(topic)
        self.data_args(data, args)
        return args

    def hex_args(
        self, topics: list[str], data: bytes, topic_cache: dict[tuple[WordDecoder, str], Any]
    ) -> dict[str, Any]:
        """:meth:`args` for hex topics (``0x`` + 64 digits each, else :class:`_Bad`), with decoded topics cached
        by their text (a ledger repeats the same few patients, accessors and roles)."""
        if len(topics) != len(self.topics) + 1:
            raise _Bad
        args: dict[str, Any] = {}
        for (name, decode), text in zip(self.topics, topics[1:], strict=True):
            key = (decode, text)
            value = topic_cache.get(key, _MISSING)
            if value is _MISSING:
                if type(text) is not str or len(text) != 66 or text[:2] != "0x":
                    raise _Bad
                try:
                    topic = bytes.fromhex(text[2:])
                except ValueError:
                    raise _Bad from None
                if len(topic) != 32:
                    raise _Bad
                value = decode(topic)
                if decode is not _bytes32 and len(topic_cache) < _TOPIC_CACHE:
                    topic_cache[key] = value
            args[name] = value
        self.data_args(data, args)
        return args

    def data_args(self, data: bytes, args: dict[str, Any]) -> None:
        head = self.head
        if self.dynamic:
            if len(data) < head + 32:
                raise _Bad
        elif len(data) != head:
            raise _Bad
        position = 0
        for name, word_decoder in self.words:
            word = data[position : position + 32]
            position += 32
            if word_decoder is not None:
                args[name] = word_decoder(word)
                continue
            # The one ``bytes``: its offset must point right after the head (as Solidity encodes it).
            if int.from_bytes(word, "big") != head:
                raise _Bad
            length = int.from_bytes(data[head : head + 32], "big")
            padded = (length + 31) // 32 * 32
            if len(data) != head + 32 + padded:
                raise _Bad
            value = data[head + 32 : head + 32 + length]
            if data[head + 32 + length :] != ZERO32[: padded - length]:
                raise _Bad
            args[name] = value


class FastLogDecoder:
    """``decode_log`` by slicing for every plain-layout event of ``codec``; the codec itself for the rest."""

    def __init__(self, codec: ContractCodec, parse: Callable[[Any], Mapping[str, Any]]) -> None:
        self.codec = codec
        self.parse = parse
        self.layouts: dict[bytes, _EventLayout] = {}
        for topic0, event in codec.events.items():
            layout = _EventLayout(event)
            if layout.ok:
                self.layouts[topic0] = layout
        # topic0 as nodes write it (lowercase hex); any other spelling takes the parsing path.
        self.hex_layouts = {"0x" + topic0.hex(): layout for topic0, layout in self.layouts.items()}
        self._topics: dict[tuple[WordDecoder, str], Any] = {}

    def decode_raw(self, raw: Mapping[str, Any]) -> DecodedEvent | None:
        """``decode_log(parse(raw))`` for a log as ``eth_getLogs`` returns it (hex strings), in one pass.

        ``parse`` is :func:`~ledger_service.codec.primitives.parse_log`; a log that is not plainly ``0x``-hex
        goes through it.
        """
        topics_hex = raw["topics"]
        data_hex = raw["data"]
        layout = self.hex_layouts.get(topics_hex[0]) if topics_hex else None
        if layout is None or type(data_hex) is not str or data_hex[:2] != "0x":
            return self.decode_log(self.parse(raw))
        try:
            args = layout.hex_args(topics_hex, bytes.fromhex(data_hex[2:]), self._topics)
        except (_Bad, ValueError):
            return self.decode_log(self.parse(raw))
        return DecodedEvent(
            layout.name,
            args,
            int(raw["blockNumber"], 16),
            hex_to_bytes(raw["blockHash"]),
            hex_to_bytes(raw["transactionHash"]),
            int(raw["logIndex"], 16),
            checksum_address(raw["address"]),
        )

    def decode_log(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        """What ``codec.decode_log(log)`` returns, for a log shaped as
        :func:`~ledger_service.codec.primitives.parse_log` makes it."""
        topics = log["topics"]
        if topics:
            layout = self.layouts.get(topics[0])
            if layout is not None and all(type(t) is bytes for t in topics) and type(log["data"]) is bytes:
                try:
                    args = layout.args(topics, log["data"])
                except _Bad:
                    return self.codec.decode_log(log)
                return DecodedEvent.of_log(layout.name, args, log)
        return self.codec.decode_log(log)
