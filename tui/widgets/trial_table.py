"""The study's trials: a VirtualTable that sorts, filters, marks and updates rows in place.

Only changed rows are re-rendered; the order is recomputed only when a new row arrived or a
changed row's sort value or filter match changed, and a recomputed order keeps the cursor's
row where it was on screen (VirtualTable.set_order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hpod.store import TrialRecord, TrialState

from ..model import TrialStats
from . import trial_rows as tr
from .table import Row, VirtualTable


class TrialTable(VirtualTable):
    DEFAULT_SORT = ("number", True)  # newest first: new trials show up at the top

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._params: list[str] = []
        self._repeats = False  # a config column: the study runs configurations several times
        self._rows_data: dict[str, tr.TrialRow] = {}
        self._search: dict[str, str] = {}
        self._sort_values: dict[str, Any] = {}
        self._running_keys: set[str] = set()
        self._tokens: list[str] = []
        self._best_id: int | None = None
        self.sort_column, self.sort_reverse = self.DEFAULT_SORT

    def configure(self, metric: str, params: Sequence[str], repeats: bool = False) -> None:
        self._params = list(params)
        self._repeats = repeats
        self.set_columns(tr.columns(metric, self._params, repeats))
        self.set_sort_marker(self.sort_column, self.sort_reverse)

    # --- reading ------------------------------------------------------------------------------

    def trial(self, key: str | None) -> TrialRecord | None:
        row = self._rows_data.get(key) if key is not None else None
        return row.trial if row is not None else None

    def trials(self) -> Iterable[TrialRecord]:
        return (row.trial for row in self._rows_data.values())

    @property
    def total(self) -> int:
        return len(self._rows_data)

    # --- updates ------------------------------------------------------------------------------

    def apply(self, trials: Iterable[TrialRecord], stats: Mapping[int, TrialStats]) -> None:
        """Upsert changed trials and stats (by trial id); reorder only when needed."""
        now = self._clock()
        touched: dict[str, tr.TrialRow] = {}
        for trial in trials:
            key = str(trial.id)
            old = self._rows_data.get(key)
            touched[key] = tr.TrialRow(trial, old.stats if old else TrialStats())
        for trial_id, trial_stats in stats.items():
            key = str(trial_id)
            base = touched.get(key) or self._rows_data.get(key)
            if base is not None:
                touched[key] = tr.TrialRow(base.trial, trial_stats)
        reorder = False
        for key, row in touched.items():
            reorder |= self._store(key, row, now)
        if reorder:
            self._reorder()

    def set_best(self, trial_id: int | None) -> None:
        if trial_id == self._best_id:
            return
        old, self._best_id = self._best_id, trial_id
        for tid in (old, trial_id):
            if tid is not None:
                self.invalidate(str(tid))

    def tick(self) -> None:
        """Advance the running trials' durations (once a second, without any database read)."""
        now = self._clock()
        for key in self._running_keys:
            self.invalidate(key)
        if self.sort_column == "time" and self._running_keys:
            for key in self._running_keys:
                self._sort_values[key] = tr.sort_value(self._rows_data[key], "time", now)
            self._reorder()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by a column; the same column again flips the direction."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        now = self._clock()
        self._sort_values = {
            key: tr.sort_value(row, column, now) for key, row in self._rows_data.items()
        }
        self.set_sort_marker(column, reverse)
        self._reorder()

    def cycle_sort(self) -> str:
        keys = [c.key for c in self.columns]
        index = keys.index(self.sort_column) if self.sort_column in keys else -1
        column = keys[(index + 1) % len(keys)]
        self.sort_by(column, reverse=column in ("number", "time", "step"))
        return column

    def set_filter(self, text: str) -> None:
        tokens = text.lower().split()
        if tokens != self._tokens:
            self._tokens = tokens
            self._reorder()

    @property
    def filter_text(self) -> str:
        return " ".join(self._tokens)

    # --- internals ----------------------------------------------------------------------------

    def _store(self, key: str, row: tr.TrialRow, now: float) -> bool:
        """Keep one row's data; True when the order has to be recomputed."""
        old = self._rows_data.get(key)
        old_match = self._matches(key) if old is not None else True
        self._rows_data[key] = row
        self._search.pop(key, None)
        if row.trial.state is TrialState.RUNNING:
            self._running_keys.add(key)
        else:
            self._running_keys.discard(key)
        old_value = self._sort_values.get(key)
        self._sort_values[key] = tr.sort_value(row, self.sort_column, now)
        self.invalidate(key)
        if old is None:
            return True
        return old_value != self._sort_values[key] or old_match != self._matches(key)

    def _matches(self, key: str) -> bool:
        if not self._tokens:
            return True
        text = self._search.get(key)
        if text is None:
            text = self._search[key] = tr.search_text(self._rows_data[key].trial)
        return tr.matches(text, self._tokens)

    def build_row(self, key: str) -> Row | None:
        row = self._rows_data.get(key)
        if row is None:
            return None
        return Row(tr.cells(row, self._params, self._clock(), self._repeats),
                   tr.tag(row, self._best_id))

    def _reorder(self) -> None:
        keys = [k for k in self._rows_data if self._matches(k)]
        pairs = [(k, self._sort_values.get(k)) for k in keys]
        self.set_order(tr.ordered(pairs, self.sort_reverse))
