"""The outbound URL guard (shared/outbound.py): every SSRF form is refused, public and allowed targets pass, and
the address that was checked is the one returned for connecting."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

import pytest

from shared.outbound import OutboundPolicy, UrlRefused, check_url, literal_address, refusal


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    """A resolver that answers `addresses` for every name (and records what it was asked)."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


PUBLIC = OutboundPolicy.build(resolver=fixed("93.184.215.14"))

# Every form the issue lists (and its relatives), each refused without a resolver being needed.
REFUSED_LITERALS = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "IPv6 form of a loopback"),
    ("http://[::ffff:7f00:1]/hook", "IPv6 form of a loopback"),
    ("http://[::127.0.0.1]/hook", "IPv6 form of a loopback"),  # IPv4-compatible
    ("http://2130706433/hook", "loopback"),  # decimal
    ("http://0x7f.1/hook", "loopback"),  # hex, short form
    ("http://0x7f000001/hook", "loopback"),
    ("http://0177.0.0.1/hook", "loopback"),  # octal
    ("http://127.1/hook", "loopback"),  # short dotted
    ("http://10.0.0.1/hook", "private"),
    ("http://172.16.5.4/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://[fe80::1]/hook", "link-local"),
    ("http://100.64.0.1/hook", "CGNAT"),
    ("http://[fc00::1]/hook", "unique-local"),
    ("http://[fd12:3456::1]/hook", "unique-local"),
    ("http://[fec0::1]/hook", "site-local"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://0/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://239.255.255.250/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://255.255.255.255/hook", "broadcast"),
    ("http://[2002:7f00:1::1]/hook", "IPv6 form of a loopback"),  # 6to4 of 127.0.0.1
    ("http://[2002:a00:1::1]/hook", "IPv6 form of a private"),  # 6to4 of 10.0.0.1
    ("http://[2002:a9fe:a9fe::1]/hook", "IPv6 form of a link-local"),  # 6to4 of 169.254.169.254
    ("http://[2001:0:808:808:0:0:80ff:fffe]/hook", "IPv6 form of a loopback"),  # Teredo, client 127.0.0.1
    ("http://[2001:0:a00:1:0:0:f7f7:f7f7]/hook", "IPv6 form of a private"),  # Teredo, server 10.0.0.1
    ("http://[64:ff9b::7f00:1]/hook", "IPv6 form of a loopback"),  # NAT64 of 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/hook", "IPv6 form of a link-local"),  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize(("url", "why"), REFUSED_LITERALS, ids=[u for u, _ in REFUSED_LITERALS])
def test_every_non_public_form_is_refused(url: str, why: str) -> None:
    resolver = fixed("93.184.215.14")
    with pytest.raises(UrlRefused) as refused:
        check_url(url, OutboundPolicy.build(resolver=resolver))
    assert refused.value.code == "invalid_webhook_url" and refused.value.status == 422
    assert why in refused.value.details and "NANOEDIT_WEBHOOK_ALLOW_HOSTS" in refused.value.suggestion
    assert resolver.asked == []  # type: ignore[attr-defined]  # literals are judged as written, never resolved


def test_numeric_host_forms_read_as_the_resolver_reads_them() -> None:
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("0x7f.1")) == "127.0.0.1"
    assert str(literal_address("0177.0.0.1")) == "127.0.0.1"
    assert str(literal_address("127.1")) == "127.0.0.1"
    assert literal_address("example.com") is None
    assert literal_address("1.2.3.4.5") is None  # not an inet_aton form: a (DNS) name


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://8.8.8.8/hook", "http(s)"), ("file:///etc/passwd", "http(s)"), ("gopher://8.8.8.8/", "http(s)"),
    ("javascript:alert(1)", "http(s)"), ("/relative/hook", "http(s)"), ("//8.8.8.8/hook", "http(s)"),
    ("http://user:pw@8.8.8.8/hook", "user info"), ("http://8.8.8.8@127.0.0.1/hook", "user info"),
    ("http://exa mple.com/", "whitespace"), ("http:///hook", "no host"), ("http://ex!ample.com/", "host"),
    ("http://8.8.8.8:99999/", "valid URL"), ("https://example.com/" + "a" * 2100, "characters"),
])
def test_malformed_or_non_http_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url(url, PUBLIC)
    assert why in refused.value.details


def test_a_name_resolving_to_loopback_is_refused_and_every_address_is_checked() -> None:
    with pytest.raises(UrlRefused, match="resolves to a non-public address"):
        check_url("https://rebind.example/hook", OutboundPolicy.build(resolver=fixed("127.0.0.1")))
    with pytest.raises(UrlRefused, match="private"):  # one bad address among good ones is enough
        check_url("https://mixed.example/hook", OutboundPolicy.build(resolver=fixed("93.184.215.14", "10.0.0.7")))
    with pytest.raises(UrlRefused, match="IPv6 form of a loopback"):
        check_url("https://v6.example/hook", OutboundPolicy.build(resolver=fixed("::ffff:127.0.0.1")))


def test_localhost_is_refused_with_the_system_resolver() -> None:
    with pytest.raises(UrlRefused, match="loopback"):
        check_url("http://localhost/hook", OutboundPolicy.build())


def test_a_public_target_is_pinned_to_the_checked_address() -> None:
    target = check_url("https://Example.COM/hooks/x?a=1", PUBLIC)
    assert (target.scheme, target.host, target.port, target.path, target.address) == (
        "https", "example.com", 443, "/hooks/x?a=1", "93.184.215.14")
    assert check_url("http://8.8.8.8/", PUBLIC).address == "8.8.8.8"
    assert check_url("http://[2606:4700::1111]/h", PUBLIC).address == "2606:4700::1111"
    assert check_url("http://[2002:808:808::1]/h", PUBLIC).host == "2002:808:808::1"  # 6to4 of a public v4
    assert check_url("http://[64:ff9b::808:808]/h", PUBLIC).port == 80  # NAT64 of a public v4


def test_only_ports_80_and_443_unless_configured() -> None:
    with pytest.raises(UrlRefused, match="port 8080 is not allowed"):
        check_url("http://8.8.8.8:8080/hook", PUBLIC)
    assert check_url("http://8.8.8.8:8080/hook", OutboundPolicy.build(ports=(443, 8080))).port == 8080


def test_allowed_hosts_and_networks_may_be_internal_on_any_port() -> None:
    by_name = OutboundPolicy.build(["Receiver.Internal"], resolver=fixed("10.1.2.3"))
    assert check_url("http://receiver.internal:9000/h", by_name).address == "10.1.2.3"
    with pytest.raises(UrlRefused):  # another name resolving to the same address is not allowed
        check_url("http://other.internal/h", by_name)
    by_network = OutboundPolicy.build(["10.0.0.0/8", "127.0.0.1"], resolver=fixed("10.9.9.9"))
    assert check_url("http://hooks.corp:8443/h", by_network).address == "10.9.9.9"
    assert check_url("http://127.0.0.1:41234/h", by_network).port == 41234
    with pytest.raises(UrlRefused, match="loopback"):
        check_url("http://127.0.0.2/h", by_network)
    with pytest.raises(UrlRefused, match="link-local"):
        check_url("http://169.254.169.254/", by_network)


def test_bad_allow_entries_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="neither a host name"):
        OutboundPolicy.build(["not a host!"])


def test_resolution_failures_are_refused_and_bounded_in_time() -> None:
    def fails(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def hangs(host: str, port: int) -> Sequence[str]:
        time.sleep(2)
        return ["93.184.215.14"]

    with pytest.raises(UrlRefused, match="does not resolve") as refused:
        check_url("https://nowhere.invalid/h", OutboundPolicy.build(resolver=fails))
    assert refused.value.retryable
    started = time.monotonic()
    with pytest.raises(UrlRefused, match=r"did not resolve within 0\.2 s"):
        check_url("https://slow.example/h", OutboundPolicy.build(resolve_timeout_s=0.2, resolver=hangs))
    assert time.monotonic() - started < 1.5


def test_refusal_of_plain_addresses() -> None:
    import ipaddress

    assert refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111")) is None
    assert refusal(ipaddress.ip_address("192.0.2.1")) == "private"  # documentation range


def test_settings_read_and_validate_the_outbound_policy() -> None:
    from shared.settings import Settings, SettingsError

    s = Settings.from_env({"NANOEDIT_WEBHOOK_ALLOW_HOSTS": "receiver.internal, 10.0.0.0/8,127.0.0.1",
                           "NANOEDIT_WEBHOOK_ALLOWED_PORTS": "443,8443"})
    policy = s.outbound_policy()
    assert policy.allow_hosts == {"receiver.internal"} and len(policy.allow_networks) == 2
    assert policy.ports == {443, 8443}
    defaults = Settings.from_env({})
    assert defaults.webhook_allowed_ports == (80, 443) and defaults.webhook_retry_hours == 24.0
    assert defaults.webhook_max_attempts == 0  # no cap: the retry window decides
    with pytest.raises(SettingsError, match="NANOEDIT_WEBHOOK_ALLOW_HOSTS"):
        Settings.from_env({"NANOEDIT_WEBHOOK_ALLOW_HOSTS": "10.0.0.0/33"})
    with pytest.raises(SettingsError, match="NANOEDIT_WEBHOOK_ALLOWED_PORTS"):
        Settings.from_env({"NANOEDIT_WEBHOOK_ALLOWED_PORTS": "http"})
