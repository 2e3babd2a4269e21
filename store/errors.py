"""Errors raised by the store.

    StoreError
    ├── NotFound            no such study / trial
    ├── InvalidTransition   a state move not in records.ALLOWED_TRANSITIONS
    ├── Conflict            a uniqueness rule broken (study name, trial number)
    ├── SchemaTooNew        the file was written by a newer hpod
    └── StoreUnavailable    the file cannot be opened or written (read-only, disk full, locked)
"""


class StoreError(Exception):
    """Base of every error the store raises."""


class NotFound(StoreError):
    pass


class InvalidTransition(StoreError):
    pass


class Conflict(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass
