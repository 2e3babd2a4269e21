"""Study files in, studies out: validates each file the watcher reports and decides what it
means — a new study, a live edit of a running one, a refused edit, an invalid file, a removal.

Every outcome is recorded (study row, event), so `hpod status` and the TUI show exactly what
`hpod check` prints; a bad file never disturbs another study.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hpod.config import DaemonConfig
from hpod.errors import NotAStudyFile, StudyFileSyntaxError, StudySpecError
from hpod.spec import StudySpec, load_study_file
from hpod.spec_fields import one_line
from hpod.spec_files import MAX_BYTES
from hpod.store.records import Direction, EventLevel, StudyRecord, StudyState
from hpod.store.store import Store
from hpod.watcher import StudyFileEvent, watch_study_files

if TYPE_CHECKING:
    from hpod.controller import StudyController

logger = logging.getLogger(__name__)

StartFn = Callable[[StudySpec, StudyRecord], None]


class StudyIntake:
    def __init__(
        self,
        config: DaemonConfig,
        store: Store,
        *,
        start: StartFn,
        live: Mapping[str, StudyController],
    ) -> None:
        self._config = config
        self._store = store
        self._start = start
        self._live = live
        self._names: dict[Path, str] = {}  # study file -> the study name it defines
        self._fingerprints: dict[Path, tuple[int, int, int, int, bytes]] = {}
        # Studies whose file was saved (or put back) while they were stopping: read again once
        # their trials have wound down (study_ended).
        self._start_when_ended: set[str] = set()
        # Files refused because another file already defines their study's name: read again
        # when that file goes (path -> the name they want).
        self._name_clashes: dict[Path, str] = {}
        # Files named like study files that hold no study (a trial's metrics.json): said once.
        self._not_studies: set[Path] = set()
        # Files recorded as broken studies because they did not parse: caught half-written (a
        # trial writing a large JSON), they may turn out to hold no study at all.
        self._unparsed: set[Path] = set()
        self._stop = asyncio.Event()
        self.initial_scan_done = asyncio.Event()
        # One file event at a time: the watcher's and a `hpod resume`'s (restart) would
        # otherwise interleave at their awaits over the same study record.
        self._one_at_a_time = asyncio.Lock()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if self._config.study_files:
            for path in self._config.study_files:
                await self.handle(StudyFileEvent(path, present=os.path.lexists(path)))
            self.initial_scan_done.set()
            return
        assert self._config.folder is not None
        logger.info("watching %s for study files", self._config.folder)
        async for batch in watch_study_files(
            self._config.folder, self._stop, debounce_ms=self._config.debounce_ms
        ):
            # Files that exist first: a rename arrives as a removal and a creation, and the
            # study must find its new file before it loses the old one (_removed).
            for event in sorted(batch, key=lambda event: not event.present):
                await self.handle(event)
            if not self.initial_scan_done.is_set():
                await self._forget_broken_of_gone_files()
            self.initial_scan_done.set()

    async def _forget_broken_of_gone_files(self) -> None:
        """At a start: a broken study whose file was removed while no daemon ran goes, as it
        would have gone had the daemon seen the removal."""
        assert self._config.folder is not None  # only a watched folder has an initial scan
        folder = os.path.realpath(self._config.folder)
        async with self._one_at_a_time:
            for record in await self._store.list_studies():
                if record.state is StudyState.INVALID and record.spec is None \
                        and not os.path.lexists(record.path) \
                        and os.path.realpath(Path(record.path).parent) == folder:
                    await self._forget(record, None, f"its study file {Path(record.path).name} "
                                       "was removed while no daemon ran")

    async def restart(self, name: str) -> bool:
        """`hpod resume` on a study that is not running (failed, stopped): read its file again."""
        path = next((p for p, n in self._names.items() if n == name), None)
        if path is None:
            return False
        self._fingerprints.pop(path, None)
        await self.handle(StudyFileEvent(path, present=os.path.lexists(path)))
        return name in self._live

    async def study_ended(self, name: str) -> None:
        """A study's controller has finished: a file saved while it was stopping is read again.
        The study counts as waiting to start (restarts_waiting) until its new controller is
        there, so the idle watch of --exit-when-idle never sees it as done in between."""
        if name in self._start_when_ended:
            try:
                await self.restart(name)
            finally:
                self._start_when_ended.discard(name)

    def restarts_waiting(self) -> bool:
        """Some study will start again once its controller, now stopping, has ended."""
        return bool(self._start_when_ended)

    def start_when_ended(self, name: str) -> bool:
        """Start study `name` again once its controller, now stopping, has ended; False when
        no file defines it any more (removed), so nothing could start."""
        if not self._claimed(name):
            return False
        self._start_when_ended.add(name)
        return True

    def _claimed(self, name: str, *, besides: Path | None = None) -> bool:
        """A file still there, other than `besides`, was last read as defining study `name`
        (validly or not): the name is not free."""
        return any(n == name and p != besides and os.path.lexists(p)
                   for p, n in self._names.items())

    async def handle(self, event: StudyFileEvent) -> None:
        async with self._one_at_a_time:
            await self._handle(event)

    async def _handle(self, event: StudyFileEvent) -> None:
        path = event.path
        if not event.present or not os.path.lexists(path):
            await self._removed(path)
            return
        fingerprint = _fingerprint(path)
        if fingerprint is not None and self._fingerprints.get(path) == fingerprint:
            return  # the watcher saw a change that did not change the file
        if fingerprint is not None:
            self._fingerprints[path] = fingerprint
        try:
            spec = load_study_file(path)
        except NotAStudyFile as error:
            await self._not_a_study(path, error)
            return
        except StudyFileSyntaxError as error:
            if path not in self._names:  # not seen holding a study before
                self._unparsed.add(path)
            await self._invalid(path, str(error))
            return
        except StudySpecError as error:
            self._unparsed.discard(path)
            await self._invalid(path, str(error))
            return
        except Exception as error:  # noqa: BLE001 - a file must never take the daemon down
            logger.exception("reading study file %s failed unexpectedly", path)
            await self._invalid(path, one_line(
                f"{path}: hpod could not read this file ({type(error).__name__}: {error}); "
                "this is a bug in hpod, please report it with the file. Fix: check the file "
                "with `hpod check`") or "")
            return
        self._not_studies.discard(path)
        self._unparsed.discard(path)
        await self._valid(path, spec, initial=event.initial)

    async def _not_a_study(self, path: Path, error: NotAStudyFile) -> None:
        """A file with no study in it (a trial's metrics.json, a pyproject.toml) is left alone,
        said once. One that was a study, or was seen holding a study's keys, is still reported:
        emptied or rewritten, it is most likely a study being edited.

        A file recorded as a broken study only because it did not parse (caught half-written),
        or before a restart, and never valid, is forgotten: its record held nothing but the
        error, and the file, read whole, shows it was never a study."""
        if path in self._not_studies:
            return  # said already: a trial rewriting its metrics.json each epoch costs nothing
        record = next((study for study in await self._store.list_studies()
                       if study.path == str(path)), None)
        seen_as_study = path in self._names and path not in self._unparsed
        why = f"{path} could not be read when it was recorded, and now holds no study"
        if not seen_as_study and record is not None and record.spec is None \
                and await self._forget(record, path, why):
            record = None
        if seen_as_study or record is not None:
            await self._invalid(path, str(error))
            return
        # Whatever name its failures were recorded under, it claims it no more.
        name = self._names.pop(path, None)
        self._unparsed.discard(path)
        if name is not None:
            await self._free_name(name)
        self._not_studies.add(path)
        logger.info("%s (ignored)", error)
        await self._store.record_event(EventLevel.INFO, f"{path} is ignored: {error.message}")

    async def _forget(self, record: StudyRecord, path: Path | None, why: str) -> bool:
        """Delete a study that never had a valid definition, so holds nothing but its error (the
        list would show it for good); False for one that ever had a definition or a trial,
        which is never deleted."""
        if record.spec is not None or self._live.get(record.name) is not None:
            return False
        if self._claimed(record.name, besides=path):
            return False  # another file, still broken, is recorded under it too
        if not await self._store.forget_study(record.id):
            return False
        if path is not None:
            self._names.pop(path, None)
            self._unparsed.discard(path)
        message = f"study {record.name}, which never had a valid definition, is removed: {why}"
        logger.info("%s", message)
        await self._store.record_event(EventLevel.INFO, message)
        return True

    async def _valid(self, path: Path, spec: StudySpec, *, initial: bool) -> None:
        name = spec.name
        owner = next((p for p, n in self._names.items() if n == name and p != path), None)
        if owner is not None and owner in self._unparsed:
            # A file that never parsed only took this name from its stem: a study that names
            # it takes it, and that file's failures go under its own file name from now on.
            self._names[owner] = owner.name
            owner = None
        if owner is not None and owner.exists():
            self._name_clashes[path] = name
            await self._invalid(
                path,
                f"{path}: field `name`: the study name `{name}` is already used by {owner.name}. "
                "Fix: give this study another `name`.",
            )
            return
        self._name_clashes.pop(path, None)
        previous = self._names.get(path)
        if previous is not None and previous != name:
            await self._retire(previous, f"its file {path.name} now defines study `{name}`")
        self._names[path] = name

        controller = self._live.get(name)
        if controller is not None and controller.ending:
            # Not an edit: the study is over and its last trials are stopping. Saving its file
            # (or putting back one just removed) asks for the study to run, as for any stopped
            # study, so it starts again once they are gone.
            self._start_when_ended.add(name)
            await self._event(
                EventLevel.INFO,
                f"study {name}: its file was saved while the study was stopping; it starts "
                "again once its running trials have ended",
                controller.study,
            )
            return
        if controller is not None:
            await self._edit(controller, spec, path)
            return
        record = await self._store.find_study(name)
        if record is None:
            record = await self._store.create_study(
                name,
                str(path),
                spec=spec.to_dict(),
                identity=spec.identity(),
                direction=spec.objective.direction,
                metric=spec.objective.metric,
            )
            await self._event(EventLevel.INFO, f"study {name} added from {path.name}", record)
        else:
            if record.spec is not None and record.identity != spec.identity():
                await self._refuse(record, _identity_refusal(name))
                return
            if initial and record.state in (StudyState.STOPPED, StudyState.FAILED):
                logger.info(
                    "study %s is %s; save its file again or run `hpod resume` to continue",
                    name, record.state.value,
                )
                return
            # A complete study keeps its state: its controller resumes it only if the file
            # gives it more to do (a larger budget), and otherwise leaves it complete without
            # announcing its end again (the "complete" event, on_finish) at every restart.
            state = (record.state if record.state in (StudyState.PAUSED, StudyState.COMPLETE)
                     else StudyState.RUNNING)
            record = await self._store.update_study(
                record.id,
                spec=spec.to_dict(),
                identity=spec.identity(),
                path=str(path),
                direction=spec.objective.direction,
                metric=spec.objective.metric,
                state=state,
                error=None,
            )
        self._start(spec, record)

    async def _edit(self, controller: StudyController, spec: StudySpec, path: Path) -> None:
        """A running study's file changed (or moved: `path` may be a new name for it): apply
        what may change, refuse the rest."""
        refusal = _edit_refusal(controller.spec, spec)
        if refusal is not None:
            await self._refuse(controller.study, refusal)
            return
        if spec.to_dict() == controller.spec.to_dict() and controller.study.error is None:
            # Saved unchanged (an editor's autosave, a copy-and-move): nothing to apply or
            # say; an event per save filled `hpod events` with thousands an hour.
            if str(path) != controller.study.path:
                await self._store.update_study(controller.study.id, path=str(path))
            logger.debug("study %s: its file was saved unchanged", spec.name)
            return
        controller.update_spec(spec)
        await self._store.update_study(controller.study.id, spec=spec.to_dict(), path=str(path),
                                       error=None)
        await self._event(
            EventLevel.INFO,
            f"study {spec.name}: new definition applied (budget {_budget_words(spec)}, "
            f"parallel {spec.parallel})",
            controller.study,
        )

    async def _refuse(self, record: StudyRecord, message: str) -> None:
        logger.warning("%s", message)
        await self._store.update_study(record.id, error=message)
        await self._event(EventLevel.ERROR, message, record)

    async def _invalid(self, path: Path, message: str) -> None:
        self._not_studies.discard(path)  # recorded now: holding no study again is news
        name = await self._broken_name(path)
        logger.warning("%s", message)
        controller = self._live.get(name)
        if controller is not None:
            note = f"{message} (study {name} keeps running with its last valid definition)"
            await self._refuse(controller.study, note)
            return
        record = await self._store.find_study(name)
        if record is None:
            record = await self._store.create_study(
                name, str(path), spec=None, identity="", direction=Direction.MINIMIZE,
                metric="", state=StudyState.INVALID, error=message,
            )
        elif record.spec is None or record.path == str(path):
            state = StudyState.INVALID if record.spec is None else record.state
            record = await self._store.update_study(
                record.id, state=state, error=message, path=str(path)
            )
        self._names[path] = name
        await self._event(EventLevel.ERROR, message, record)

    async def _broken_name(self, path: Path) -> str:
        """The study a file that does not validate is recorded under: the one it was read as
        before, else its stem, unless another file defines that study. A broken `results.json`
        a trial writes beside `results.toml` must neither put its error on that file's study
        nor block it, so it is recorded under its own file name."""
        known = self._names.get(path)
        if known is not None:
            return known
        stem = path.stem
        if self._claimed(stem, besides=path):
            return path.name
        record = await self._store.find_study(stem)
        if record is not None and record.spec is not None and record.path != str(path) \
                and os.path.lexists(record.path):
            return path.name  # read before that file, at a start
        return stem

    async def _free_name(self, name: str) -> None:
        """A file refused because another one held `name` may now take it."""
        for other, wanted in list(self._name_clashes.items()):
            if wanted == name:
                self._fingerprints.pop(other, None)
                await self._handle(StudyFileEvent(other, present=os.path.lexists(other)))

    async def _removed(self, path: Path) -> None:
        self._fingerprints.pop(path, None)
        self._not_studies.discard(path)
        self._unparsed.discard(path)
        self._name_clashes.pop(path, None)
        name = self._names.pop(path, None)
        if name is None:
            return
        if self._claimed(name):
            # Renamed (`mv a.toml b.toml`, an editor's save-as): the study is defined by the
            # file under its new name, which was read first, and goes on.
            return
        self._start_when_ended.discard(name)
        await self._retire(name, f"its study file {path.name} was removed")
        await self._free_name(name)

    async def _retire(self, name: str, why: str) -> None:
        controller = self._live.get(name)
        if controller is not None:
            controller.stop(f"study stopped: {why}")
            await self._event(EventLevel.INFO, f"study {name} stopped: {why}", controller.study)
            return
        record = await self._store.find_study(name)
        if record is not None and record.state is StudyState.INVALID \
                and not await self._forget(record, None, why):
            await self._store.update_study(record.id, state=StudyState.STOPPED, error=None)

    async def _event(self, level: EventLevel, message: str, record: StudyRecord | None) -> None:
        await self._store.record_event(
            level, message, study_id=record.id if record is not None else None
        )


def _fingerprint(path: Path) -> tuple[int, int, int, int, bytes] | None:
    """mtime, size, mode, owner and content hash: saving a file unchanged still counts as a
    change (that is how a user restarts a failed study), and so does `chmod go-w` or `chown`
    on a refused one (hpod.safety); a watcher echo does not.

    None (always read again) for anything but a regular file of study-file size: opening a FIFO
    could block, and hashing a 100 MB file for an error the reader gives from its size is waste.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            digest = hashlib.sha256(os.read(fd, MAX_BYTES + 1)).digest()
        finally:
            os.close(fd)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid, digest


def _identity_refusal(name: str) -> str:
    return (
        f"study {name}: its command, space or objective changed, which would mix trials of "
        "different searches in one study. Fix: give the study a new `name` to start a new "
        "one, or restore the file's previous definition"
    )


def _edit_refusal(old: StudySpec, new: StudySpec) -> str | None:
    if old.identity() != new.identity():
        return _identity_refusal(new.name) + " (it keeps running with its previous definition)"
    for field, old_value, new_value in (
        ("suggester", old.suggester, new.suggester),
        ("scheduler", old.scheduler, new.scheduler),
        ("seed", old.seed, new.seed),
        # How many runs make a configuration: changing it would leave half-measured ones.
        ("trial.repeats", old.trial.repeats, new.trial.repeats),
    ):
        if old_value != new_value:
            return (
                f"study {new.name}: `{field}` cannot change while the study runs (it keeps "
                f"running with its previous `{field}`). Fix: restore it, or give the study a new "
                "`name` to start over with the new one"
            )
    return None


def _budget_words(spec: StudySpec) -> str:
    parts = []
    if spec.budget.trials is not None:
        parts.append(f"{spec.budget.trials} trials")
    if spec.budget.hours is not None:
        parts.append(f"{spec.budget.hours:g} h")
    return " or ".join(parts) or "none"
