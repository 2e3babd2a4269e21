"""Errors raised by hpod (the store has its own tree in hpod.store.errors).

    HpodError
    ├── StudySpecError      a study file does not validate (names file, field and fix)
    │   ├── StudyFileSyntaxError  its TOML, YAML or JSON does not parse
    │   ├── NotAStudyFile   it parses, but holds no study (a trial's metrics.json)
    │   └── SpaceError      the [space] table is wrong (also a ValueError)
    ├── LaunchError         a trial could not be started (command missing, fork failed)
    ├── WireError           a trial wrote something that is not the pipe protocol
    ├── SuggestError        a suggester could not propose a point
    │   └── SearchExhausted every point of a finite space was proposed
    ├── DaemonError         the daemon cannot run (another daemon holds the database, ...)
    └── NotEnoughResults    too few results for `hpod importance` (hpod.importance)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class HpodError(Exception):
    """Base of every error hpod raises on purpose."""


class StudySpecError(HpodError):
    """A study file is invalid. `str()` is the one line the daemon records and `hpod check` prints."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.path = path
        self.field = field
        self.message = message
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(str(self.path))
        if self.field:
            where.append(f"field `{self.field}`")
        text = ": ".join([*where, self.message]) if where else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class StudyFileSyntaxError(StudySpecError):
    """A file named like a study file whose TOML, YAML or JSON does not parse: a study with a
    typo, or any file caught half-written. Until it parses, nobody can tell which."""


class NotAStudyFile(StudySpecError):
    """A file named like a study file that holds none of a study's keys (a trial's
    `metrics.json`, a `pyproject.toml`): the daemon leaves it alone instead of recording an
    invalid study."""

    @classmethod
    def holding(cls, path: str | Path, held: str) -> NotAStudyFile:
        """`held` says what the file holds instead of a study ("it is empty"). One fix for
        every such file: hpod cannot tell a study still being written from a trial's output,
        so the words serve both."""
        return cls(f"not a study file: {held}", path=str(path),
                   fix="a study needs `command`, `objective` and `space` (docs/study-file.md); "
                       "keep other files (a trial's outputs, project files) out of the watched "
                       "folder, or write them under HPOD_TRIAL_DIR")


class SpaceError(StudySpecError, ValueError):
    """The search space is invalid; raised by hpod.Space.from_dict."""


class LaunchError(HpodError):
    pass


class WireError(HpodError):
    pass


class SuggestError(HpodError):
    pass


class SearchExhausted(SuggestError):
    """A finite space (grid, gp-grid) has no unproposed point left; the study is complete."""


class DaemonError(HpodError):
    pass
