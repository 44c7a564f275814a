"""The OS library: every profile, what the cache holds of it, and fetch / verify / remove / import.

An operator getting ready for the lab (or already in it, with PCs waiting) sees per profile the
version cached, its size, whether every file is verified, and whether upstream offers a newer
release (once asked: `c`). Fetches run in the app's worker threads and show one progress bar
each below the table; the screen only draws what the app's `ProfilesHost` holds and asks it to
start the work, so nothing here blocks the screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label, ProgressBar, Static

from pxetui.boot.cache import FileState, profile_status
from pxetui.boot.profiles import Profile, imported_profiles_dir, is_valid_name
from pxetui.commands.import_iso import profile_name_for
from pxetui.session import Session
from pxetui.tui.contracts import ProfilesHost
from pxetui.tui.downloads import Download
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.forms import Field, FormScreen
from pxetui.tui.widgets import KeyBar, bar_keys

# (key, label, cells); the title takes what is left and goes first when the terminal is narrow.
COLUMNS = (("name", "Profile", 18), ("cached", "Cached", 10), ("size", "Size", 9), ("state", "Files", 24),
           ("upstream", "Upstream", 16))  # fmt: skip
TITLE_LEAST = 16
KEY_PRIORITY = ("fetch", "verify", "remove", "import_iso", "check", "app.pop_screen")


def size_text(size: int) -> str:
    if size <= 0:
        return "-"
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.1f} MB"


def files_state(
    profile: Profile, cache: Mapping[str, FileState], download: Download | None
) -> tuple[str, str]:
    """(the Files cell, its style) from the files' states and a running or failed fetch."""
    if download is not None and not download.finished:
        pct = download.percent
        return (f"fetching {pct:.0f}%" if pct is not None else "fetching"), "bold cyan"
    if not profile.files:
        return ("boots no files" if profile.action else "chains elsewhere"), "grey62"
    if download is not None and download.error:
        return "fetch failed", "bold red"
    by_state: dict[FileState, list[str]] = {}
    for role, state in cache.items():
        by_state.setdefault(state, []).append(role)
    if set(by_state) == {FileState.PRESENT}:
        return "verified", "green"
    for state, style in ((FileState.UNVERIFIED, "bold yellow"), (FileState.PARTIAL, "yellow"),
                         (FileState.MISSING, "yellow")):  # fmt: skip
        if state in by_state:
            return f"{state.value} {','.join(by_state[state])}", style
    return "?", ""


def upstream_text(profile: Profile, cached: str | None, newest: str | None) -> tuple[str, str]:
    if profile.release is None:
        if profile.files and all(ref.path for ref in profile.files.values()):
            return "local files", "grey62"  # the operator's own (path:): nothing upstream to ask
        return ("fixed files" if profile.files else ""), "grey62"
    if newest is None:
        return "not asked (c)", "grey62"
    if cached == newest:
        return f"{newest} current", "green"
    return f"{newest} newer", "bold yellow"


class ProfilesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "fetch", "Fetch", tooltip="download the profile's files (the newest release)"),
        Binding("v", "verify", "Verify", tooltip="hash the cached files again against their checksums"),
        Binding("x", "remove", "Remove", tooltip="delete the profile's files from the cache"),
        Binding("o", "import_iso", "Import ISO", tooltip="copy an installer ISO's kernel and initrd in"),
        Binding("c", "check", "Upstream", tooltip="ask upstream what each release line offers now"),
        Binding("escape,q", "app.pop_screen", "Back", key_display="esc", tooltip="back to the machines"),
    ]

    def __init__(self, session: Session, host: ProfilesHost) -> None:
        super().__init__(id="profiles")
        self.session = session
        self.host = host
        self.shown_columns: list[tuple[str, str, int]] = []
        self._rows: dict[str, tuple[Text, ...]] = {}
        self._bars: dict[str, Horizontal] = {}
        self.ready = False

    def compose(self) -> ComposeResult:
        yield Static(id="profiles-title")
        table: DataTable[Text] = DataTable(
            id="profile-table", cursor_type="row", zebra_stripes=True, cell_padding=0
        )
        yield table
        yield Vertical(id="downloads")
        yield KeyBar(bar_keys(self.BINDINGS, KEY_PRIORITY), id="profile-keys")

    def on_mount(self) -> None:
        self._fit(self.app.size.width)
        self.ready = True
        self.refresh_profiles()
        self.query_one("#profile-table", DataTable).focus()

    def on_unmount(self) -> None:
        self.ready = False

    def on_resize(self, event: events.Resize) -> None:
        if self.ready:
            self._fit(event.size.width)
            self.refresh_profiles()

    def _fit(self, width: int) -> None:
        room = width - 1 - sum(cells for _, _, cells in COLUMNS)  # the scrollbar's cell
        shown = [*COLUMNS, ("title", "Title", room)] if room >= TITLE_LEAST else list(COLUMNS)
        if shown == self.shown_columns:
            return
        self.shown_columns = shown
        table = self.query_one("#profile-table", DataTable)
        table.clear(columns=True)
        for key, label, cells in shown:
            table.add_column(f" {label}", key=key, width=cells)
        self._rows.clear()

    # -- what is shown ----------------------------------------------------------------------------

    def _profiles(self) -> list[Profile]:
        return sorted(self.session.profiles.values(), key=lambda p: p.name)

    def _row(self, profile: Profile) -> tuple[Text, ...]:
        cache_dir = self.session.config.cache_dir
        statuses = profile_status(profile, cache_dir)
        cached = profile.pinned_version(cache_dir)
        download = self.host.downloads.get(profile.name)
        state, style = files_state(profile, {s.role: s.state for s in statuses}, download)
        have = cached or ("yes" if statuses and all(s.state is FileState.PRESENT for s in statuses) else "-")
        upstream, up_style = upstream_text(profile, cached, self.host.upstream.get(profile.name))
        cells = {
            "name": _cell(profile.name, "bold"),
            "cached": _cell(have),
            "size": _cell(size_text(sum(s.size for s in statuses))),
            "state": _cell(state, style),
            "upstream": _cell(upstream, up_style),
            "title": _cell(profile.title),
        }
        return tuple(cells[key] for key, _, _ in self.shown_columns)

    def refresh_profiles(self) -> None:
        """Redraw the rows that changed and the download bars (the app calls it on progress)."""
        if not self.ready:
            return
        table = self.query_one("#profile-table", DataTable)
        profiles = self._profiles()
        keep_cursor: Profile | None = None
        if self._rows and any(p.name not in self._rows for p in profiles):
            # A profile came (an ISO imported): the rows again in name order, the cursor kept.
            keep_cursor = self.cursor_profile()
            table.clear()
            self._rows.clear()
        for profile in profiles:
            row = self._row(profile)
            old = self._rows.get(profile.name)
            if old is None or profile.name not in table.rows:
                table.add_row(*row, key=profile.name)
            elif old != row:
                for (key, _, _), cell, was in zip(self.shown_columns, row, old, strict=True):
                    if cell != was:
                        table.update_cell(profile.name, key, cell)
            self._rows[profile.name] = row
        if keep_cursor is not None:
            table.move_cursor(row=table.get_row_index(keep_cursor.name))
        cache = self.session.config.cache_dir
        title = Text.assemble(("OS profiles", "bold"), f"  {len(profiles)} profiles, cache {cache}")
        self.query_one("#profiles-title", Static).update(title)
        self._refresh_bars()

    def _refresh_bars(self) -> None:
        """One labelled bar per download this session, in the order they started."""
        pane = self.query_one("#downloads", Vertical)
        for name, download in self.host.downloads.items():
            line = self._bars.get(name)
            if line is None:
                # Widget ids by number: a profile name may hold '.', which an id may not.
                line = Horizontal(
                    Label(classes="dl-label"),
                    ProgressBar(total=None, show_eta=False),
                    Label(classes="dl-note"),
                    classes="download",
                    id=f"download-{len(self._bars)}",
                )
                self._bars[name] = line
                pane.mount(line)
                self.call_after_refresh(self._refresh_bars)  # its children exist after the mount
                continue
            if not line.children:
                continue
            line.query_one(".dl-label", Label).update(download.label or name)
            bar = line.query_one(ProgressBar)
            if download.total:
                bar.update(total=download.total, progress=download.done)
            elif download.finished:
                bar.update(total=1, progress=1 if download.error is None else 0)
            note = download.error or download.note
            line.query_one(".dl-note", Label).update(
                Text(note, style="red" if download.error else "", no_wrap=True, overflow="ellipsis")
            )

    def download_bar(self, profile: str) -> ProgressBar | None:
        """The progress bar of `profile`'s download, once it is shown."""
        line = self._bars.get(profile)
        return line.query_one(ProgressBar) if line is not None and line.children else None

    def cursor_profile(self) -> Profile | None:
        table = self.query_one("#profile-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.session.profiles.get(str(key))

    # -- actions ----------------------------------------------------------------------------------

    def _say(self, title: str, reason: str | None, done: str) -> None:
        if reason:
            self.notify(reason, title=title, severity="error", timeout=10)
        else:
            self.notify(done, title=title)
        self.refresh_profiles()

    def action_fetch(self) -> None:
        profile = self.cursor_profile()
        if profile is not None:
            self._say("Fetch", self.host.start_fetch(profile.name), f"fetching {profile.name}")

    def action_verify(self) -> None:
        profile = self.cursor_profile()
        if profile is not None:
            self._say("Verify", self.host.start_verify(profile.name), f"verifying {profile.name}")

    def action_check(self) -> None:
        self._say("Upstream", self.host.start_check(), "asking upstream what each release line offers")

    def action_remove(self) -> None:
        profile = self.cursor_profile()
        if profile is None:
            return
        name = profile.name
        assigned = sum(1 for e in self.session.plan.entries.values() if e.profile == name)
        warn = f" {assigned} PC(s) are assigned to it and will not boot it." if assigned else ""

        def answered(yes: bool | None) -> None:
            if yes:
                self._say("Remove", self.host.remove_files(name), f"removed the cached files of {name}")

        question = f"Delete the cached files of {name}?{warn} Files named by 'path:' are kept."
        self.app.push_screen(ConfirmScreen(question, yes="Delete", no="Keep"), answered)

    def action_import_iso(self) -> None:
        offered: set[str] = set()  # imported profiles this form offered to replace

        def apply(values: dict[str, str]) -> str | None:
            if not values["path"]:
                return "give the path of an installer ISO"
            iso = Path(values["path"]).expanduser()
            if not iso.is_file():
                return f"{iso}: no such file"
            # The name is checked here, in the form's words: import-iso's own refusals name its
            # --name and --force, which this form does not have.
            name = values["name"] or profile_name_for(iso.resolve())
            if not is_valid_name(name):
                return f"profile name {name!r}: lower-case letters, digits, '.', '_' or '-' (64 at most)"
            force = False
            existing = self.session.profiles.get(name)
            if existing is not None:
                if existing.source.parent != imported_profiles_dir(self.session.config.cache_dir):
                    return f"{name} is already a profile ({existing.source}): type another profile name"
                if name not in offered:
                    offered.add(name)
                    return (
                        f"{name} was imported before ({existing.source}). Press Enter again to"
                        " replace it with this ISO, or type another profile name"
                    )
                force = True
            reason = self.host.start_import(str(iso), values["name"] or None, force)
            if reason is None:
                self.notify(f"importing {iso}", title="Import ISO")
            return reason

        self.app.push_screen(
            FormScreen(
                "Import an installer ISO",
                [
                    Field("path", "ISO file", "/path/to/installer.iso"),
                    Field("name", "Profile name (optional)", "from the file name"),
                ],
                apply,
                note="Its kernel and initrd (and the ISO, where its installer needs it) go into the cache.",
                form_id="import-iso-form",
            )
        )


def _cell(text: str, style: str = "") -> Text:
    return Text(" " + text, style=style, no_wrap=True, overflow="ellipsis")
