"""A `--range` outside the subnet is refused with an example that is inside it (issue 17: a /26 was
told `198.18.0.100-198.18.0.199`, outside 198.18.0.0/26). The example is then accepted as is."""

from __future__ import annotations

import ipaddress
import re

import pytest
from package_lab import service_context

from pxetui.errors import UsageError
from pxetui.services.context import ServiceSettings
from pxetui.services.dhcp.server import DhcpService

IP = ipaddress.IPv4Address


def refusal(address: str, first: str, last: str) -> str:
    settings = ServiceSettings(mode="full", pool=(IP(first), IP(last)))
    with pytest.raises(UsageError) as refused:
        DhcpService(service_context(settings, address))
    return str(refused.value)


@pytest.mark.parametrize(
    ("address", "wrong"),
    [
        ("198.18.0.1/26", ("198.18.0.100", "198.18.0.199")),  # the case: .100 is past a /26
        ("198.18.0.65/26", ("198.18.0.1", "198.18.0.20")),  # the second /26: .64-.127
        ("198.18.0.1/29", ("198.18.1.10", "198.18.1.20")),
        ("198.18.0.1/24", ("198.18.1.100", "198.18.1.199")),
        ("198.18.0.1/30", ("198.18.1.1", "198.18.1.2")),  # too small for the default range
    ],
)
def test_the_hint_is_inside_the_subnet_and_accepted(address: str, wrong: tuple[str, str]) -> None:
    message = refusal(address, *wrong)
    network = ipaddress.IPv4Interface(address).network
    assert f"is not inside {network}" in message
    hint = re.search(r"e\.g\. (\S+)-(\S+)$", message)
    assert hint is not None, message
    low, high = IP(hint.group(1)), IP(hint.group(2))
    assert low in network and high in network and low <= high, message
    assert low not in (network.network_address, network.broadcast_address)
    assert high not in (network.network_address, network.broadcast_address)
    DhcpService(service_context(ServiceSettings(mode="full", pool=(low, high)), address))  # taken as given
