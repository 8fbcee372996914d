"""Which `job.callback_url` a server may POST to: the one rule, checked at submit (on the text) and at delivery (on
every address the host name resolves to). Pure: no network here; the webhook dispatcher resolves and connects.

A callback URL is a request the server makes on a client's behalf, from inside the operator's network. Without a
rule a client points it at the server itself, the cloud metadata service (169.254.169.254) or anything else only the
server can reach (SSRF). So, by default:
- only `http` / `https`, at most MAX_URL_CHARS characters, printable ASCII without spaces (a `\\r\\n` would split
  the request line), no `user:password@`, a host of letters, digits, `.`, `-`, `_` (or a bracketed IPv6 literal);
- the host, read the way the resolver reads it (`2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` all mean
  127.0.0.1), must not be loopback, link-local, private, shared (CGNAT), multicast, unspecified or reserved; an
  IPv6 form that carries an IPv4 address (`::ffff:127.0.0.1`, 6to4, NAT64) is judged by that address too;
- `localhost` and `*.localhost` are loopback by name (RFC 6761).
An operator admits in-cluster receivers with an allow-list (`zlt serve --callback-allow CIDR_OR_HOST`): an address
inside a listed network, or a listed host name (`*.svc.cluster.local` for every name under it).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from zlt.core.errors import BadInputError

FIELD = "job.callback_url"
MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
ALLOW_FLAG = "--callback-allow"
ALLOW_ENV = "ZLT_CALLBACK_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]*$")  # printable ASCII, no space, no control character
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HINT = "e.g. https://agents.example.com/hooks/zlt"


def _refuse(message: str, hint: str = _HINT) -> BadInputError:
    return BadInputError(f"{FIELD}: {message}", hint=hint)


@dataclass(frozen=True)
class CallbackURL:
    """A callback URL split the way the webhook client uses it."""

    url: str
    scheme: str
    host: str  # lower case, no brackets, no trailing dot
    port: int
    target: str  # path and query, what the request line carries
    address: IPAddress | None  # the host as an IP address, when it is one (in any spelling the resolver accepts)


def parse_callback_url(url: object) -> CallbackURL:
    """Syntax only (no address policy): BadInputError naming `job.callback_url`, else the parts."""
    if not isinstance(url, str):
        raise _refuse(f"expected a string, got {type(url).__name__}")
    if len(url) > MAX_URL_CHARS:
        raise _refuse(f"{len(url)} characters; at most {MAX_URL_CHARS}", "use a shorter URL")
    if not _PRINTABLE.fullmatch(url):
        raise _refuse("contains a space, a control character (such as CR/LF) or a non-ASCII character",
                      "percent-encode it (and write an international host name in punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _refuse(f"{url!r} is not a valid URL ({e})") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise _refuse(f"{url!r} is not an http(s) URL with a host")
    if "@" in parts.netloc:
        raise _refuse("credentials in the URL (user@host) are not sent", "authenticate the body by its signature")
    if port == 0:
        raise _refuse("port 0 is not a port a receiver listens on")
    host = parts.hostname.rstrip(".")
    address = _ip_literal(host, bracketed=parts.netloc.startswith("["))
    if address is None and not _HOST_NAME.fullmatch(host):
        raise _refuse(f"host {parts.hostname!r} is not a host name or an IP address")
    scheme = parts.scheme.lower()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackURL(url, scheme, host, port or (443 if scheme == "https" else 80), target, address)


def _ip_literal(host: str, *, bracketed: bool) -> IPAddress | None:
    """The address a resolver reads in `host`, or None for a name. IPv4 in every spelling inet_aton accepts."""
    if bracketed or ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(f"host [{host}] is not an IPv6 address") from None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # '2130706433', '0x7f.1', '0177.0.0.1', '127.1'
    except OSError:
        return None


def _embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address routes to or stands for (mapped, compatible, 6to4, NAT64, Teredo)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    found = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    if addr.teredo:
        found.extend(addr.teredo)
    if addr in _NAT64 or (int(addr) >> 32 == 0 and int(addr) > 1):  # 64:ff9b::a.b.c.d, deprecated ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def why_refused(addr: IPAddress) -> str | None:
    """What makes an address one a webhook must not reach by default (None: a public unicast address)."""
    for a in (*_embedded_ipv4(addr), addr):  # the IPv4 address first: "loopback, as 127.0.0.1" says why
        for what, hit in (("loopback", a.is_loopback), ("unspecified", a.is_unspecified),
                          ("link-local", a.is_link_local), ("multicast", a.is_multicast),
                          ("private", a.is_private), ("reserved", a.is_reserved), ("not public", not a.is_global)):
            if hit:
                return what if a is addr else f"{what}, as {a}"
    return None


@dataclass(frozen=True)
class CallbackAllow:
    """The operator's exceptions to the default rule: networks and host names (`*.suffix` for a whole domain)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str] | CallbackAllow | None) -> CallbackAllow:
        """From `--callback-allow` / $ZLT_CALLBACK_ALLOW entries (each may hold several, comma- or space-separated)."""
        if isinstance(entries, CallbackAllow):
            return entries
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for raw in entries or ():
            for entry in re.split(r"[,\s]+", str(raw).strip()):
                if not entry:
                    continue
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                    continue
                except ValueError:
                    pass
                name = entry.lower().rstrip(".")
                if not _HOST_NAME.fullmatch(name.removeprefix("*.")):
                    raise BadInputError(f"{ALLOW_FLAG}: {entry!r} is neither an address, a network (CIDR) nor a "
                                        "host name", hint="e.g. 10.0.0.0/8, 127.0.0.1, hooks.svc.cluster.local, "
                                        "*.svc.cluster.local")
                hosts.append(name)
        return cls(tuple(networks), tuple(hosts))

    def admits_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)

    def admits_address(self, addr: IPAddress) -> bool:
        candidates = (addr, *_embedded_ipv4(addr))
        return any(a.version == n.version and a in n for a in candidates for n in self.networks)

    def check(self, url: object) -> str:
        """`check_callback_url` with this allow-list (what the server's fence calls)."""
        return check_callback_url(url, self)


NOTHING_ALLOWED = CallbackAllow()


def check_address(host: str, addr: IPAddress, allow: CallbackAllow = NOTHING_ALLOWED) -> None:
    """BadInputError unless a webhook for `host` may connect to `addr` (a literal, or what `host` resolved to)."""
    if allow.admits_host(host) or allow.admits_address(addr):
        return
    why = why_refused(addr)
    if why is not None:
        shown = str(addr) if str(addr) == host else f"{host} ({addr})"
        raise _refuse(f"{shown} is {why}: the server does not send webhooks there",
                      f"use a public receiver, or ask the operator to allow it (zlt serve {ALLOW_FLAG} CIDR_OR_HOST)")


def check_callback_url(url: object, allow: CallbackAllow = NOTHING_ALLOWED) -> str:
    """The URL, if the server may POST to it as far as its text tells; else BadInputError naming
    `job.callback_url`. A host name is judged again on its resolved addresses when delivering."""
    parsed = parse_callback_url(url)
    if parsed.address is not None:
        check_address(parsed.host, parsed.address, allow)
    elif (parsed.host == "localhost" or parsed.host.endswith(".localhost")) and not allow.admits_host(parsed.host):
        raise _refuse(f"{parsed.host} is loopback: the server does not send webhooks to itself",
                      f"use a public receiver, or ask the operator to allow it (zlt serve {ALLOW_FLAG} CIDR_OR_HOST)")
    return parsed.url
