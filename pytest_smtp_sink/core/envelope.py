"""Envelope: one received message as the protocol saw it (the dump layer renders it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import SinkConfig


# Not frozen: a frozen dataclass sets each field through object.__setattr__, eight times
# the cost of this one's construction, once per message. Nothing changes one once made.
@dataclass(slots=True, unsafe_hash=True)  # (hashable, as the events that carry it)
class Envelope:
    """A completed mail transaction, before it becomes a ``Transaction`` (read-only).

    ``helo`` and ``client_proto`` are the values at MAIL (the X-Helo-Args and X-Client-Proto
    headers); ``received_helo`` and ``received_proto`` those at the end of data, which the
    Received header names, as in Postfix. Texts from the client are kept as sent (UTF-8, with
    other octets as surrogates: ``client_text``); the dump sanitises them as Postfix does.
    """

    client_addr: str  # "127.0.0.1", "ipv6:::1" or "local"
    client_proto: str
    helo: str | None
    mail_args: str  # X-Mail-Args
    rcpt_args: tuple[str, ...]  # X-Rcpt-Args
    queue_id: str  # 8 lowercase hex digits
    timestamp: float  # the MAIL time: dump names and dates are built from it
    received_helo: str | None
    received_proto: str
    hostname: str  # -h
    start_string: str  # -S
    data: bytes  # the message in its dump form (``framing.dump_form``)
    smtputf8: bool = False  # MAIL ... SMTPUTF8 (announced): addresses are UTF-8 text
    auth_user: str | None = None  # the user of a successful AUTH
    tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" when TLS was on
    raw: bytes | None = None  # BDAT: the message octets exactly as received
    # the configuration the transaction began with (where to dump it, the reply to ".")
    config: SinkConfig | None = field(default=None, compare=False, repr=False)


def client_text(raw: bytes) -> str:
    """Octets from the client as text: UTF-8, any other octet kept as a surrogate, so that
    ``text.encode("utf-8", "surrogateescape")`` gives the octets back."""
    return raw.decode("utf-8", "surrogateescape")


def mail_or_rcpt_value(args: str) -> str:
    """X-Mail-Args / X-Rcpt-Args value: skip to the first ':', all ':' and then spaces."""
    colon = args.find(":")
    if colon < 0:
        return ""
    return args[colon:].lstrip(":").lstrip(" ")


def address_of(value: str) -> str:
    """The address inside ``<...>`` at the start of X-Mail-Args/X-Rcpt-Args."""
    value = value.strip()
    if value.startswith("<"):
        end = value.find(">")
        return value[1:end] if end >= 0 else value[1:]
    return value.split(" ", 1)[0]


def params_of(value: str) -> dict[str, str | None]:
    value = value.strip()
    if value.startswith("<"):
        end = value.find(">")
        rest = value[end + 1 :] if end >= 0 else ""
    else:
        parts = value.split(" ", 1)
        rest = parts[1] if len(parts) > 1 else ""
    params: dict[str, str | None] = {}
    for item in rest.split():
        key, sep, val = item.partition("=")
        params[key.upper()] = val if sep else None
    return params
