"""Requests Herald makes to URLs that someone else chose: the guard against SSRF.

A tenant's webhook URL (and any other URL a tenant or a file names: a service account's
``token_uri``, an image) may point anywhere, including at Herald's own network: the
database, the cloud's metadata service at 169.254.169.254, an admin port on localhost.
Every such request goes through this module, which

* accepts https only (http only when the caller allows it, e.g. for tests);
* refuses credentials in the URL, and hosts that are not names or IP addresses;
* resolves the host itself and refuses it when *any* address is private, loopback,
  link-local, multicast, reserved or otherwise not global (IPv4 inside IPv6 included:
  ``::ffff:10.0.0.1``, 6to4, NAT64), unless the caller allows private addresses;
* connects to the very address it checked, sending the name as ``Host`` and as the TLS
  server name (so a DNS answer that changes between check and connect, "DNS rebinding",
  changes nothing);
* never follows a redirect (the 3xx is the answer), uses short timeouts, and never
  reads more of the response than a few kilobytes, which it then throws away: a
  response body is never returned, logged or stored.

Numeric forms that resolvers accept (``http://2130706433/``, ``0x7f.1``, ``0177.0.0.1``)
go through the same resolver and are judged by the address they become.

This module imports no Herald app, so any of them may use it.
"""

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

__all__ = ["OutboundResponse", "RequestFailed", "SafeUrl", "UnsafeUrl", "check_url", "post", "resolve"]

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 5.0
MAX_URL_LENGTH = 2000
# Read (and discard) at most this much of an answer; a larger one is cut off.
_DRAIN_BYTES = 8192
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """A URL Herald refuses to send to. ``code`` is stable; the message names the reason."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class RequestFailed(Exception):
    """A request that got no HTTP answer. ``error_class`` is one of: dns, connect,
    timeout, tls, protocol (never the response body, which is never read into it)."""

    def __init__(self, error_class: str, message: str, *, latency_ms: int):
        super().__init__(message)
        self.error_class = error_class
        self.latency_ms = latency_ms


@dataclass(frozen=True)
class SafeUrl:
    """A URL that passed the checks, with the addresses it resolved to."""

    url: str
    scheme: str
    host: str  # as written, without brackets
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    latency_ms: int
    address: str


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (numeric forms included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_public(address: str) -> bool:
    """Whether an address is globally routable unicast, judging IPv4 carried in IPv6 too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_multicast or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(str(embedded))
    return True


def parse_url(url: str, *, allow_http: bool) -> tuple[str, str, int, str]:
    """Check a URL's form without touching the network: (scheme, host, port, target)."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("The URL is empty.", code="invalid_url")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.", code="invalid_url")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or not url.isascii():
        raise UnsafeUrl(
            "The URL contains spaces, control or non-ASCII characters; percent-encode them "
            "(and write an international domain name in its xn-- form).",
            code="invalid_url",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The URL is malformed: {exc}.", code="invalid_url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("The URL must start with https://.", code="https_required")
    if scheme == "http" and not allow_http:
        raise UnsafeUrl("The URL must use https (plain http is not allowed here).", code="https_required")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl("The URL must not carry a user name or password.", code="invalid_url")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("The URL has no host.", code="invalid_url")
    if parts.netloc.startswith("[") is not (":" in host):
        raise UnsafeUrl("An IPv6 address must be written in brackets.", code="invalid_url")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-.:")
    if not set(host) <= allowed or ".." in host or len(host) > 253:
        raise UnsafeUrl("The URL's host is not a valid name or address.", code="invalid_url")
    if parts.fragment:
        raise UnsafeUrl("The URL must not have a #fragment.", code="invalid_url")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), target


def check_url(
    url: str,
    *,
    allow_http: bool = False,
    allow_private: bool = False,
    resolver=None,
    require_resolution: bool = True,
) -> SafeUrl:
    """Check a URL and resolve its host; raise UnsafeUrl if Herald must not send to it.

    With ``require_resolution=False`` a host that does not resolve (yet) passes with no
    addresses (for registering a URL whose DNS is not live); a host that does resolve is
    judged as always. Sending re-checks: ``post`` never skips resolution.
    """
    scheme, host, port, target = parse_url(url, allow_http=allow_http)
    try:
        addresses = tuple((resolver or resolve)(host, port))
    except (OSError, UnicodeError):
        if require_resolution:
            raise UnsafeUrl(f"The host {host} does not resolve.", code="unresolvable_host") from None
        addresses = ()
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UnsafeUrl(
                    f"The host {host} resolves to {address}, a private, loopback, link-local or "
                    "reserved address; Herald does not send there.",
                    code="private_address",
                )
    return SafeUrl(url=url, scheme=scheme, host=host, port=port, target=target, addresses=addresses)


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    allow_http: bool = False,
    allow_private: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    resolver=None,
) -> OutboundResponse:
    """POST body to url under the rules above and return the status (3xx included: never
    followed) and latency. Raises UnsafeUrl before connecting, or RequestFailed when no
    HTTP answer came."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    safe = check_url(url, allow_http=allow_http, allow_private=allow_private, resolver=resolver)
    address = safe.addresses[0]
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    options = {"timeout": timeout, "retries": False, "maxsize": 1, "block": False}
    if safe.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            safe.port,
            server_hostname=safe.host,
            assert_hostname=safe.host,
            cert_reqs="CERT_REQUIRED",
            ssl_context=ssl.create_default_context(),
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, safe.port, **options)
    try:
        response = pool.urlopen(
            "POST",
            safe.target,
            body=body,
            redirect=False,
            preload_content=False,
            headers={**headers, "Host": safe.host_header, "Content-Length": str(len(body))},
        )
        try:
            response.read(_DRAIN_BYTES, decode_content=False)  # thrown away, never kept
        except urllib3.exceptions.HTTPError:
            pass
        response.release_conn()
        return OutboundResponse(status=response.status, latency_ms=elapsed(), address=address)
    except urllib3.exceptions.HTTPError as exc:
        kind = _error_class(getattr(exc, "reason", None) or exc)
        raise RequestFailed(kind, f"{kind}: {type(exc).__name__}", latency_ms=elapsed()) from None
    except OSError as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else "connect"
        raise RequestFailed(kind, f"{kind}: {type(exc).__name__}", latency_ms=elapsed()) from None
    finally:
        pool.close()


def _error_class(exc: BaseException) -> str:
    errors = urllib3.exceptions
    # NewConnectionError subclasses ConnectTimeoutError (urllib3 history): test it first.
    if isinstance(exc, errors.NewConnectionError | errors.NameResolutionError):
        return "connect"
    if isinstance(exc, errors.ConnectTimeoutError | errors.ReadTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, errors.SSLError | ssl.SSLError):
        return "tls"
    return "protocol"
