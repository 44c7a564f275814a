"""One small modal form for every operator action that needs input.

A form shows labelled inputs (and optionally a list of choices that fills the first input),
calls `apply(values)` on Enter / OK, and stays open showing the returned message when the
action was refused: nothing the operator typed is lost and the plan is unchanged.

At 80x24 a form is taller than the screen (the assign list, a long list of CSV problems): the
title and the buttons stay put and the part between them scrolls, so OK stays on screen and
the error is scrolled into view. Tab moves focus before the next key is read (a priority
binding): a paste or a barcode scanner typing "MAC<Tab>hostname" fills both fields, where the
keys after Tab used to land in the field Tab left.

`FetchOffer` is fetch on first use as every form that names a profile offers it (assign, add
a machine): the Session's refusal of a profile whose files can be fetched becomes an offer,
and a second Enter on the same profile starts the fetch and does the action again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from pxetui.boot.cache import NotServable
from pxetui.errors import PxetuiError

# Returns None when the action was done, else the message to show (the form stays open).
Apply = Callable[[dict[str, str]], str | None]
# Starts a background fetch of a profile: None once it runs, else why it cannot (MainHost's).
StartFetch = Callable[[str], str | None]
# Rows a dialog needs besides its scrolling body: border 2, padding 2, title 2, buttons 4.
DIALOG_CHROME = 10


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    label: str
    placeholder: str = ""
    value: str = ""
    suggestions: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Choice:
    """One line of a form's list: `key` goes into the first field; `text` is shown after it."""

    key: str
    text: str
    mark: str = ""  # one character before the text: ✓ files present, ↓ still to fetch


def choice_prompt(choice: Choice) -> Text:
    """The list line, cut rather than wrapped: a wrapped title read as another entry."""
    prompt = Text(no_wrap=True, overflow="ellipsis")
    prompt.append(f"{choice.key:<18} ", style="bold")
    if choice.mark:
        prompt.append(f"{choice.mark} ", style="green" if choice.mark == "✓" else "yellow")
    prompt.append(choice.text)
    return prompt


class FetchOffer:
    """Fetch on first use in a form: offer to fetch a missing profile once, start it on a second Enter.

    One per open form. `attempt` runs the form's action (which asks the Session); a refusal
    because the profile's files are missing but fetchable is first answered with the offer,
    and nothing changes. The same profile refused again means the operator accepted: the fetch
    starts (the Session then allows the profile while it runs) and the action is tried again.
    """

    def __init__(self, start_fetch: StartFetch) -> None:
        self.start_fetch = start_fetch
        self.offered: set[str] = set()  # profiles offered in this form
        self.started: str | None = None  # the profile whose fetch the last attempt started

    def attempt(self, action: Callable[[], object], who: str, then: str) -> str | None:
        """None once `action` is done, else the message the form shows (the offer, or why not).

        `who`: the machine(s) that would wait; `then`: what the second Enter does besides
        fetching ("assign it", "add the machine").
        """
        self.started = None
        try:
            action()
            return None
        except NotServable as refused:
            if not refused.fetchable:
                return str(refused)
            name = refused.profile.name
            if name not in self.offered:
                self.offered.add(name)
                return (
                    f"{name} is not downloaded yet. Press Enter again to fetch it now and {then}:"
                    f" {who} will wait at a retry screen until its files are verified, then boot."
                    f"\n({refused})"
                )
        except PxetuiError as exc:
            return str(exc)
        if reason := self.start_fetch(name):
            return reason
        try:
            action()
        except PxetuiError as again:
            return str(again)
        self.started = name
        return None


class FormScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        apply: Apply,
        *,
        note: str = "",
        choices: Sequence[Choice] = (),
        form_id: str = "form",
        focus_choices: bool = False,
    ) -> None:
        super().__init__(id=form_id)
        self.form_title = title
        self.fields = list(fields)
        self.apply = apply
        self.note = note
        self.choices = list(choices)
        self.focus_choices = focus_choices and bool(self.choices)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.form_title, classes="form-title")
            with VerticalScroll(classes="form-body"):
                if self.note:
                    yield Static(self.note, classes="form-note")
                if self.choices:
                    yield OptionList(
                        *(Option(choice_prompt(c), id=c.key) for c in self.choices), id="choices"
                    )
                for f in self.fields:
                    yield Label(f.label)
                    suggester = (
                        SuggestFromList(f.suggestions, case_sensitive=False) if f.suggestions else None
                    )
                    yield Input(
                        value=f.value, placeholder=f.placeholder, id=f"field-{f.key}", suggester=suggester
                    )
                yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._fit(self.app.size.height)
        if self.focus_choices:
            choices = self.query_one("#choices", OptionList)
            current = self.query_one(f"#field-{self.fields[0].key}", Input).value
            keys = [c.key for c in self.choices]
            choices.highlighted = keys.index(current) if current in keys else 0
            choices.focus()
        else:
            self.query_one(f"#field-{self.fields[0].key}", Input).focus()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        self.query_one(".form-body", VerticalScroll).styles.max_height = max(3, height - DIALOG_CHROME)

    def values(self) -> dict[str, str]:
        return {f.key: self.query_one(f"#field-{f.key}", Input).value.strip() for f in self.fields}

    def submit(self) -> None:
        message = self.apply(self.values())
        error = self.query_one("#form-error", Static)
        if message:
            error.update(message)
            error.add_class("shown")
            # After the refresh the message has its height: then its end can be brought into view.
            self.call_after_refresh(self._show_error)
            return
        self.dismiss(True)

    def _show_error(self) -> None:
        body = self.query_one(".form-body", VerticalScroll)
        body.scroll_end(animate=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.query_one(f"#field-{self.fields[0].key}", Input).value = event.option.id
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.submit()
        else:
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)

    @property
    def error_text(self) -> str:
        return str(self.query_one("#form-error", Static).content)
