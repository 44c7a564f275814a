"""The package proxy: apt-cacher-ng, run as pxetui's child on the lab address, so a room of PCs
installs through the laptop's uplink and downloads each package once.

`server.py` runs and watches the child; `config.py` is the pure part (which hosts are allowed,
the generated acng.conf, the child's log lines turned into counts); `uplink.py` reads the routing
table to tell whether the laptop has a way to the internet at all.
"""
