"""Who can reach a served page: loopback addresses are this machine's only."""

from __future__ import annotations

import ipaddress


def is_local(address: str) -> bool:
    """Whether ``address`` is reachable from this machine only (a loopback address)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may be reachable from elsewhere
