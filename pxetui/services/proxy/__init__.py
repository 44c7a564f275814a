"""The package proxy: squid, run as pxetui's child on the lab address, so a room of PCs installs
through the laptop's uplink and downloads each package once.

`server.py` runs and watches the child (and says why squid, not apt-cacher-ng); `config.py` is
the pure part (which hosts are allowed, the generated squid.conf, its access log lines turned
into counts); `uplink.py` reads the routing table to tell whether the laptop has a way to the
internet at all.
"""
