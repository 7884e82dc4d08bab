"""The outbound address policy: which addresses a sink may connect to for a target an account supplies.

Webhook URLs and FTP, FTPS and SFTP hosts come from accounts; without a policy they would let
anyone with an account make the gateway reach its own host and network (server-side request
forgery). By default the policy allows public unicast addresses only: it refuses loopback,
private, link-local, shared (CGNAT), unique-local, multicast, documentation, reserved and
unspecified ranges, in IPv4 and IPv6, with IPv4 embedded in IPv6 (mapped, compatible, NAT64,
6to4) judged as the IPv4 address it reaches. Networks an operator allows
(``outbound_allow_networks``) are reachable whatever their range.

A host is judged by the addresses it resolves to at the moment of connecting, and the sink
connects to exactly one of those checked addresses (``OutboundPolicy.connect``), so a name
that resolves elsewhere a second later (DNS rebinding) gains nothing. The operator's SMTP
relay comes from configuration and is not subject to the policy.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass

from gateway.errors import ConfigError, DeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSAL = "address not allowed by outbound policy"
SETTING = "outbound_allow_networks"

_REFUSED_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, where cloud metadata services answer
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
))
# Of IPv6, only global unicast (2000::/3) is ever a public destination; within it these are not.
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
_REFUSED_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID)
    "2001:db8::/32", "3fff::/20",  # documentation
))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


class AddressNotAllowed(DeliveryError):
    """A target resolves to an address the outbound policy refuses; nothing was connected to it."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{REFUSAL}: {host}", retryable=False)
        self.host = host


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, compatible, NAT64 or 6to4 forms), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (judging an embedded IPv4 address as itself)."""
    if isinstance(address, ipaddress.IPv6Address) and address in _COMPATIBLE:
        return False  # deprecated IPv4-compatible forms (and :: and ::1): never a public destination
    inner = embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in _REFUSED_V4)
    return address in _GLOBAL_V6 and not any(address in network for network in _REFUSED_V6)


@dataclass(frozen=True)
class OutboundPolicy:
    """Public unicast addresses, and those in ``allowed`` (networks the operator lets targets reach)."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        """The policy of an ``outbound_allow_networks`` value (comma-separated CIDRs); ConfigError naming a bad one."""
        allowed: list[IPNetwork] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                allowed.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(f"{SETTING}: {entry!r} is not a network in CIDR notation "
                                  "(such as 10.1.0.0/16 or fd00::/8)") from None
        return cls(tuple(allowed))

    def permits(self, address: IPAddress) -> bool:
        """Whether a sink may connect to ``address``."""
        inner = embedded_ipv4(address)
        candidates = (address,) if inner is None else (address, inner)
        if any(a.version == n.version and a in n for a in candidates for n in self.allowed):
            return True
        return is_public(address)

    def addresses(self, host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
        """The (family, socket address) pairs ``host`` resolves to now, if the policy permits every one.

        AddressNotAllowed if it does not; OSError (``socket.gaierror``) if the name does not resolve.
        """
        found: list[tuple[int, tuple[object, ...]]] = []
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise AddressNotAllowed(host)
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if not self.permits(address):
                raise AddressNotAllowed(host)
            if (family, sockaddr) not in found:
                found.append((family, tuple(sockaddr)))
        return found

    def check(self, host: str, port: int) -> None:
        """AddressNotAllowed if ``host`` is, or now resolves to, an address the policy refuses.

        A name that does not resolve passes: it is judged again at every connection.
        """
        try:
            self.addresses(host, port)
        except (OSError, UnicodeError):
            return

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to one of the addresses ``host`` resolves to, all of them checked first.

        The socket is connected to exactly a checked address, never to the name, so a second
        resolution cannot lead elsewhere. AddressNotAllowed, or the OSError of the last address tried.
        """
        try:
            candidates = self.addresses(host, port)
        except UnicodeError:
            raise socket.gaierror(socket.EAI_NONAME, "not a valid host name") from None
        error: OSError = OSError(f"{host} has no address")
        for family, sockaddr in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise error


PUBLIC_ONLY = OutboundPolicy()
"""The default policy: public unicast addresses only."""


@functools.lru_cache(maxsize=8)
def policy_for(allow_networks: str) -> OutboundPolicy:
    """The policy of an ``outbound_allow_networks`` value, parsed once per value."""
    return OutboundPolicy.parse(allow_networks)
