"""Errors meant for the operator: each message says what is wrong and what to do."""


class PxetuiError(Exception):
    """An error the CLI prints as one line and turns into an exit status."""

    exit_code = 1


class UsageError(PxetuiError):
    """The operator asked for something that cannot work as given (exit status 2)."""

    exit_code = 2
