"""Checked reading of one table of a study file: types, ranges, unknown keys, did-you-mean.

Shared by the study-file parser (hpod.spec) and the `[space]` parser (hpod.space_params) so both
word their errors the same way: "must be an integer, got string 'abc'".
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from hpod.errors import StudySpecError

# NOTE: a number a float cannot hold (TOML/JSON ints are unbounded) would raise OverflowError
# deep inside math; every numeric check refuses it first.
_FLOAT_MAX = 1e300


def describe(value: Any) -> str:
    """A short, one-line description of a value for error messages: `string 'abc'`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        if abs(value) < 10**30:
            return f"integer {value}"
        # NOTE: str() refuses ints of more than 4300 digits; the digit count comes from the bits.
        digits = int(value.bit_length() * math.log10(2)) + 1
        if digits > 4000:
            return f"integer of about {digits} digits"
        text = str(value)
        return f"integer {text[:12]}... ({len(text)} digits)"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_short(value)}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _short(text: str, limit: int = 60) -> str:
    shown = repr(text if len(text) <= limit else text[:limit] + "...")
    return shown


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """The closest option to a misspelt word, or None; case-insensitive first, then difflib."""
    options = [o for o in options]
    lowered = {o.lower(): o for o in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def one_line(text: str | None) -> str | None:
    """Escape control characters (a key may hold a newline) so an error stays one line."""
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clean_error(error: StudySpecError) -> StudySpecError:
    """The same error with every part made printable on one line."""
    return type(error)(one_line(error.message) or "", path=one_line(error.path),
                       field=one_line(error.field), fix=one_line(error.fix))


def join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


class Fields:
    """Raises `error` (a StudySpecError subclass) naming the file and the dotted field.

    One instance per parse: it only remembers which file and which error class to use.
    """

    def __init__(self, *, path: str | None = None, error: type[StudySpecError] = StudySpecError) -> None:
        self.path = path
        self.error = error

    def fail(self, field: str | None, message: str, fix: str | None = None) -> NoReturn:
        raise self.error(message, path=self.path, field=field, fix=fix)

    # -- containers ----------------------------------------------------------------------------

    def table(self, value: Any, field: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(field, f"must be a table, got {describe(value)}",
                      f"write it as a table, e.g. {field.rsplit('.', 1)[-1]} = {{ ... }}")
        for key in value:
            if not isinstance(key, str):
                self.fail(field, f"has a key that is not a string: {describe(key)}",
                          "quote the key")
        return value

    def known_keys(self, table: Mapping[str, Any], prefix: str, allowed: Iterable[str],
                   *, context: str = "") -> None:
        """Refuses keys outside `allowed`, suggesting the closest valid one."""
        allowed = list(allowed)
        for key in table:
            if key in allowed:
                continue
            guess = did_you_mean(key, allowed)
            where = f" {context}" if context else ""
            # A key can be any length; the error line quotes its start only.
            shown = key if len(key) <= 60 else key[:60] + "…"
            if guess is not None:
                self.fail(join(prefix, shown), f"unknown key {shown!r}{where}. Did you mean "
                          f"{guess!r}?", f"rename it to {guess!r}")
            valid = ", ".join(allowed) if allowed else "none"
            self.fail(join(prefix, shown), f"unknown key {shown!r}{where}",
                      f"remove it; valid keys here: {valid}")

    def required(self, table: Mapping[str, Any], key: str, prefix: str, fix: str) -> Any:
        if key not in table:
            self.fail(join(prefix, key), "is required but missing", fix)
        return table[key]

    # -- scalars -------------------------------------------------------------------------------

    def string(self, value: Any, field: str, *, max_len: int = 1000, nonempty: bool = True) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {describe(value)}", 'quote it: "..."')
        if nonempty and not value.strip():
            self.fail(field, "must not be empty", "give it a value")
        if len(value) > max_len:
            self.fail(field, f"is too long ({len(value)} characters, at most {max_len})", "shorten it")
        if "\x00" in value:
            self.fail(field, "contains a NUL character", "remove it")
        return value

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {describe(value)}",
                      "write true or false (no quotes)")
        return value

    def integer(self, value: Any, field: str, *, low: int | None = None,
                high: int | None = None) -> int:
        """An int; a float with an integral value (1e3 in YAML/JSON) is accepted. Never a bool."""
        if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
                and abs(value) <= 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {describe(value)}", "write a whole number")
        self._range(value, field, low, high)
        return value

    def number(self, value: Any, field: str, *, low: float | None = None,
               high: float | None = None, positive: bool = False) -> float:
        """A finite float (ints accepted, bools not); `positive` means strictly > 0."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, f"must be a number, got {describe(value)}", "write a number (no quotes)")
        if isinstance(value, int) and abs(value) > _FLOAT_MAX:
            self.fail(field, f"is too large: {describe(value)}", "use a smaller number")
        if not math.isfinite(value):
            self.fail(field, f"must be a finite number, got {value!r}", "write a finite number")
        number = float(value)
        if positive and number <= 0:
            self.fail(field, f"must be greater than 0, got {value!r}", "use a positive number")
        self._range(number, field, low, high)
        return number

    def _range(self, value: float, field: str, low: float | None, high: float | None) -> None:
        if low is not None and value < low:
            self.fail(field, f"must be at least {low}, got {describe(value)}",
                      f"use a value >= {low}")
        if high is not None and value > high:
            self.fail(field, f"must be at most {high}, got {describe(value)}",
                      f"use a value <= {high}")

    def choice(self, value: Any, field: str, choices: Iterable[str],
               aliases: Mapping[str, str] | None = None) -> str:
        """One of a set of words; `aliases` maps accepted spellings to canonical ones."""
        choices = list(choices)
        text = self.string(value, field)
        if aliases and text in aliases:
            return aliases[text]
        if text in choices:
            return text
        guess = did_you_mean(text, [*choices, *(aliases or {})])
        if aliases and guess is not None:
            guess = aliases.get(guess, guess)
        listed = ", ".join(repr(c) for c in choices)
        if guess is not None:
            self.fail(field, f"unknown value {text!r}. Did you mean {guess!r}?",
                      f"use one of {listed}")
        self.fail(field, f"unknown value {text!r}", f"use one of {listed}")
