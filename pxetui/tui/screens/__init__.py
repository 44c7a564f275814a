"""The TUI's screens: picker, main table, detail, help, and the modal forms."""
