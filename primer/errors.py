"""Errors a user can act on.

Anything raised as a `PrimerError` is printed by the CLI as one clear line (what is wrong, where, how to
fix it) without a traceback. Everything else is a bug and keeps its traceback.
"""


class PrimerError(Exception):
    """An error caused by input or configuration, with a message that names the culprit and the fix."""


class ConfigError(PrimerError):
    """A configuration field has a bad value or does not exist."""


class InputError(PrimerError):
    """An input (file, dataset, URI) is missing, unreadable or malformed."""


class StoreError(PrimerError):
    """The artifact store cannot be reached or holds an incomplete/corrupt output."""
