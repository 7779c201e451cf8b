"""Outgoing URLs (decision callbacks, alert webhooks) must not reach inside the network.

Anyone who may edit an agent sets its callback URL; without a check, Steward's workers would
POST wherever it points: the cloud metadata service (169.254.169.254), Redis or PostgreSQL
on loopback, an admin page on the private network (SSRF). So in production a URL must be
https and its host must resolve to public addresses only.

- `check_outgoing_url(url)` when a URL is saved (forms) and again before each send;
- `safe_opener()` for sending: it checks the address each connection really reaches, so a
  name that resolved to a public address at check time and to a private one at send time
  (DNS rebinding) is still refused. It does not use proxies from the environment: the check
  must see where the request goes.

Tests and local development (DEBUG, or STEWARD_ALLOW_PRIVATE_WEBHOOKS) may use plain http
and local receivers; then nothing is checked beyond the scheme.
"""

import http.client
import ipaddress
import socket
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

# Blocked although not all are "private" to the ipaddress module: carrier-grade NAT, and
# the metadata service's link-local range (is_link_local covers it, kept for clarity).
_EXTRA_BLOCKED = [ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("169.254.0.0/16")]


def private_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "STEWARD_ALLOW_PRIVATE_WEBHOOKS", False))


def is_public_address(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified
    addresses (IPv4 mapped in IPv6 judged as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _refuse(url: str, why: str) -> ValidationError:
    return ValidationError(f"{url} cannot be used: {why}", code="unsafe_url")


def check_outgoing_url(url: str, *, resolve: bool = True,
                       require_resolution: bool = True) -> None:
    """Raise ValidationError, saying why, unless Steward may send to `url`.

    With `resolve`, the host's addresses are looked up and every one must be public;
    `require_resolution=False` (saving a form) accepts a host that does not resolve yet,
    since the check before each send refuses it if it then points inside.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(url, f"it is not a valid URL ({exc}).") from None
    allowed_schemes = ("https", "http") if private_allowed() else ("https",)
    if parts.scheme not in allowed_schemes:
        raise _refuse(url, "use an https:// URL (plain http would send the signed decision "
                           "unencrypted).")
    host = parts.hostname
    if not host:
        raise _refuse(url, "it has no host name.")
    if private_allowed():
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise _refuse(url, f"{host} is a local name; use a public host name.")
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal or resolve:
        try:
            infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            if require_resolution:
                raise _refuse(url, f"the host name {host} does not resolve.") from None
            return
        for *_rest, sockaddr in infos:
            if not is_public_address(sockaddr[0]):
                raise _refuse(url, f"{host} points to {sockaddr[0]}, a private, loopback or "
                                   "link-local address; Steward only calls public addresses.")


class UnsafeAddress(OSError):
    """The connection reached an address Steward must not call."""


def _checked_connection(address, *args, **kwargs):
    sock = socket.create_connection(address, *args, **kwargs)
    peer = sock.getpeername()[0]
    if not private_allowed() and not is_public_address(peer):
        sock.close()
        raise UnsafeAddress(f"{address[0]} resolved to {peer}, a private, loopback or "
                            "link-local address; Steward only calls public addresses.")
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_connection  # http.client's hook for the socket


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_connection  # checked before the TLS handshake


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context)


def safe_opener(*handlers) -> urllib.request.OpenerDirector:
    """A urllib opener that refuses to connect to non-public addresses (see above)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _HTTPHandler,
                                       _HTTPSHandler, *handlers)
