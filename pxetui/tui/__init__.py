"""The Textual TUI: the only part of pxetui that imports textual."""
