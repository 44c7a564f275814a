"""One small modal form for every operator action that needs input.

A form shows labelled inputs (and optionally a list of choices that fills the first input),
calls `apply(values)` on Enter / OK, and stays open showing the returned message when the
action was refused: nothing the operator typed is lost and the plan is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

# Returns None when the action was done, else the message to show (the form stays open).
Apply = Callable[[dict[str, str]], str | None]


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    label: str
    placeholder: str = ""
    value: str = ""
    suggestions: Sequence[str] = field(default_factory=tuple)


class FormScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        apply: Apply,
        *,
        note: str = "",
        choices: Sequence[tuple[str, str]] = (),
        form_id: str = "form",
    ) -> None:
        super().__init__(id=form_id)
        self.form_title = title
        self.fields = list(fields)
        self.apply = apply
        self.note = note
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.form_title, classes="form-title")
            if self.note:
                yield Static(self.note, classes="form-note")
            if self.choices:
                yield OptionList(
                    *(Option(f"{key:<18} {text}", id=key) for key, text in self.choices), id="choices"
                )
            for f in self.fields:
                yield Label(f.label)
                suggester = SuggestFromList(f.suggestions, case_sensitive=False) if f.suggestions else None
                yield Input(
                    value=f.value, placeholder=f.placeholder, id=f"field-{f.key}", suggester=suggester
                )
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#field-{self.fields[0].key}", Input).focus()

    def values(self) -> dict[str, str]:
        return {f.key: self.query_one(f"#field-{f.key}", Input).value.strip() for f in self.fields}

    def submit(self) -> None:
        message = self.apply(self.values())
        error = self.query_one("#form-error", Static)
        if message:
            error.update(message)
            error.add_class("shown")
            return
        self.dismiss(True)

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
