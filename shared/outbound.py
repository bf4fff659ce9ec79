"""The outbound URL guard: may the service send a request to a URL a *client* chose (job webhooks today, image
URLs later)? Operator-configured URLs (alert channels) are trusted configuration and do not come through here.

`check_url(url, policy)` parses the URL, resolves its host (bounded in time), checks **every** address it
resolves to, and returns a `Target` that carries the one address that was checked: `shared.outbound_http`
connects to exactly that address (no second resolution, so DNS rebinding between check and connect fails) and
never follows redirects. Refused:

- schemes other than http/https, user info (`user:pass@`), hosts that are not plain ASCII names or IP literals,
  URLs over 2048 characters;
- any address that is not globally routable: loopback, private (RFC 1918), link-local (incl. the cloud metadata
  address 169.254.169.254), shared/CGNAT 100.64.0.0/10, unique-local fc00::/7, site-local fec0::/10,
  multicast, reserved, unspecified (0.0.0.0, ::), broadcast — and the IPv6 forms that embed an IPv4 address
  (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, 6to4 2002::/16, Teredo 2001::/32 server and client,
  NAT64 64:ff9b::/96), judged by the IPv4 address inside;
- the numeric host spellings `inet_aton` accepts (2130706433, 0x7f.1, 0177.0.0.1, 127.1) are read as the IPv4
  address they denote, exactly as the resolver would, before any check;
- ports other than `policy.ports` (80 and 443 by default).

Operators allow internal receivers explicitly (NANOEDIT_WEBHOOK_ALLOW_HOSTS): an entry is a host name (exact,
case-insensitive) or an IP/CIDR. An allowed host name may resolve to anything; an address inside an allowed
network passes the address check. A URL whose host is allowed either way may use **any port** (the operator
vouched for that receiver; tests run receivers on 127.0.0.1 with ephemeral ports).

Built on the stdlib `ipaddress` (its `is_global` table) plus the explicit checks above, which it lacks.
Hand-written because no maintained library fits: `advocate` (the requests-based one) pins urllib3 < 2 and has
not been released since 2020; the other PyPI "SSRF guard" packages are young single-author projects or
httpx/async-only, and the pinned connection itself is a few lines over `http.client`.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ClientInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port → the addresses it resolves to (strings, IPv4 or IPv6). Tests inject their own.
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_INET_ATON_FORM = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

SUGGESTION = ("Use an http(s) URL on port 80 or 443 whose host name resolves only to public internet addresses "
              "(no user:password@). Operators allow internal receivers with NANOEDIT_WEBHOOK_ALLOW_HOSTS "
              "(host names or CIDRs) and other ports with NANOEDIT_WEBHOOK_ALLOWED_PORTS.")


class UrlRefused(ClientInputError):
    """A client-chosen URL the service will not call (422 `invalid_webhook_url`)."""

    code = "invalid_webhook_url"

    def __init__(self, details: str, *, retryable: bool = False) -> None:
        super().__init__(details, suggestion=SUGGESTION)
        self.retryable = retryable  # a resolver failure may pass later; an address or syntax refusal never


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What may be called: the allow-list (host names and networks), the ports, the resolver's time bound."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    ports: frozenset[int] = frozenset({80, 443})
    resolve_timeout_s: float = 2.0
    resolver: Resolver | None = None  # None: the system resolver (getaddrinfo)

    @classmethod
    def build(cls, allow: Sequence[str] = (), ports: Sequence[int] = (80, 443), resolve_timeout_s: float = 2.0,
              resolver: Resolver | None = None) -> OutboundPolicy:
        """From configuration: each `allow` entry is a host name or an IP/CIDR (raises ValueError otherwise)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in allow if e.strip()):
            network = parse_network(entry)
            if network is not None:
                networks.append(network)
            elif _HOST_NAME.match(entry.lower()):
                hosts.add(entry.lower().rstrip("."))
            else:
                raise ValueError(f"{entry!r} is neither a host name nor an IP address or CIDR")
        return cls(frozenset(hosts), tuple(networks), frozenset(ports), resolve_timeout_s, resolver)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allow_networks)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: connect to `address` (and only there), send `host` in the Host header and for TLS."""

    url: str
    scheme: str  # "http" | "https"
    host: str  # lower-case name or IP literal, without brackets
    port: int
    path: str  # path + query, at least "/"
    address: str  # the checked IP address to connect to (the resolver's first)
    fallbacks: tuple[str, ...] = ()  # the other checked addresses, tried in order if `address` cannot connect


def parse_network(entry: str) -> IPNetwork | None:
    """An IP address or CIDR (`10.0.0.0/8`, `127.0.0.1`, `::1`) as a network; None if it is not one."""
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host literal denotes, the way the resolver reads it: IPv6 in brackets or bare, dotted
    IPv4, and the `inet_aton` forms (decimal 2130706433, hex 0x7f.1, octal 0177.0.0.1, short 127.1)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _INET_ATON_FORM.match(host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and would reach through a translator or tunnel)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _category(address: IPAddress) -> str | None:
    """Why a plain address is not a public destination, or None when it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (incl. cloud metadata)"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared address space (CGNAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.IPv6Network("fc00::/7"):
        return "unique-local"
    if address == _BROADCAST:
        return "broadcast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def refusal(address: IPAddress) -> str | None:
    """Why the service must not connect to `address`, or None when it is a public destination."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            reason = _category(inner)
            if reason is not None:
                return f"IPv6 form of a {reason} IPv4 address"
        if address in _NAT64:
            return None  # NAT64 of a public IPv4 address: judged by the address inside (checked above)
    return _category(address)


@dataclass(frozen=True, slots=True)
class _Parsed:
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Parsed:
    if not url or len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"webhook_url must be 1..{MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise UrlRefused("webhook_url has whitespace, control or non-ASCII characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"webhook_url is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused("webhook_url must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise UrlRefused("webhook_url must not contain user info (user:password@)")
    host = (parts.hostname or "").lower()
    if not host:
        raise UrlRefused("webhook_url has no host")
    if literal_address(host) is None and not _HOST_NAME.match(host):
        raise UrlRefused("webhook_url's host is not a valid host name or IP address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Parsed(scheme, host, port if port is not None else DEFAULT_PORTS[scheme], path)


def check_syntax(url: str) -> None:
    """The checks that need no resolution (scheme, user info, host syntax, length); raises `UrlRefused`."""
    _parse(url)


def check_url(url: str, policy: OutboundPolicy) -> Target:
    """Parse, resolve (bounded by `policy.resolve_timeout_s`) and check every address; raises `UrlRefused`.

    `Target.address` is the first resolved address and `Target.fallbacks` the rest; every one passed the check."""
    p = _parse(url)
    name_allowed = p.host.rstrip(".") in policy.allow_hosts
    literal = literal_address(p.host)
    addresses = [literal] if literal is not None else _resolve(p.host, p.port, policy)
    host_allowed = name_allowed or all(policy.allows_address(a) for a in addresses)
    if not name_allowed:
        for address in addresses:
            reason = refusal(address)
            if reason is not None and not policy.allows_address(address):
                shown = f"{p.host} is" if literal is not None else f"{p.host} resolves to"
                raise UrlRefused(f"webhook_url host {shown} a non-public address ({reason}); the service only "
                                 "calls public addresses")
    if not host_allowed and p.port not in policy.ports:
        raise UrlRefused(f"webhook_url port {p.port} is not allowed (allowed: "
                         f"{', '.join(str(x) for x in sorted(policy.ports))})")
    host = p.host.strip("[]")
    checked = list(dict.fromkeys(str(a) for a in addresses))
    return Target(url=url, scheme=p.scheme, host=host, port=p.port, path=p.path, address=checked[0],
                  fallbacks=tuple(checked[1:]))


# -- resolution, bounded in time -------------------------------------------------------------------------------
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """A small pool per process (created after a fork, never inherited) so a lookup can be abandoned."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="nanoedit-dns")
            _pool_pid = os.getpid()
        return _pool


def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo: every address (IPv4 and IPv6) the host has, as the socket layer would use them."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _resolve(host: str, port: int, policy: OutboundPolicy) -> list[IPAddress]:
    resolver = policy.resolver or system_resolver
    future = _executor().submit(resolver, host, port)
    try:
        raw = future.result(timeout=policy.resolve_timeout_s)
    except concurrent.futures.TimeoutError:
        raise UrlRefused(f"webhook_url host {host} did not resolve within {policy.resolve_timeout_s:g} s",
                         retryable=True) from None
    except (OSError, UnicodeError):
        raise UrlRefused(f"webhook_url host {host} does not resolve", retryable=True) from None
    addresses: list[IPAddress] = []
    for value in raw:
        try:
            addresses.append(ipaddress.ip_address(value.split("%", 1)[0]))  # drop an IPv6 zone id
        except ValueError:
            continue
    if not addresses:
        raise UrlRefused(f"webhook_url host {host} has no IP address", retryable=True)
    return addresses
