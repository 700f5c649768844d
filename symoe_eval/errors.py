"""One exception type for every user-facing mistake, so CLIs can print it as one line."""


class SymoeError(Exception):
    """A bad input or environment problem with a one-line explanation of how to fix it."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
