"""DHCP for PXE: a small struct codec (the hot path), leases, the answer policy and the rival probe.

The service that owns the sockets lives in pxetui/services/dhcp.py; everything here is plain
code without sockets except probe.py, so it can be tested and fuzzed without a network.
"""
