"""pxetui: network-install a room full of PCs from one interface, with a live TUI."""

__version__ = "0.1.0"
