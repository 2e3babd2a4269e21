"""`kill -9` of the daemon in the middle of studies, then a restart on the same folder.

What must hold afterwards, read from the real SQLite file: the trials that had completed are
the same rows, never run again; the ones that were running come back with the same params and
resume from their last checkpoint; the suggester never proposes a point twice (a grid ends with
exactly its points); the scheduler's rungs go on stopping and promoting after the restart.
"""

from __future__ import annotations

import contextlib

import itertools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import FIXTURE_TRIALS, DaemonProcess, hpod_cli, study_status, wait_until, write_study
from hpod.store import StoreReader, StoreUnavailable, TrialRecord, TrialState
from robustness_support import (STEADY, TRIALS, alive, db_of, fault_study, integrity,
                                recorded_pids, trials_of)

pytestmark = pytest.mark.slow


def steady_study(*, trials: int | None, extra: str = "", space: str | None = None) -> str:
    budget = f"budget = {{ trials = {trials} }}" if trials is not None else ""
    space = space or 'x = { type = "float", low = 0.0, high = 1.0 }'
    return f"""
command = ["python", "{STEADY}"]
objective = {{ metric = "loss", direction = "minimize" }}
{budget}
parallel = 2
seed = 5
{extra}
[space]
{space}
steps = 10
sleep = 0.05
"""


def kill_9_when(daemon: DaemonProcess, folder: Path, study: str,
                ready: Callable[[list[TrialRecord]], bool], what: str) -> list[TrialRecord]:
    """SIGKILL the daemon once the study's trials satisfy `ready`; returns them as they were."""
    snapshot: list[TrialRecord] = []

    def check() -> bool:
        try:
            snapshot[:] = trials_of(folder, study)
        except StoreUnavailable:  # the daemon is still creating the file
            return False
        return ready(snapshot)

    wait_until(check, timeout=120, what=what)
    daemon.process.kill()
    daemon.wait()
    # The trials die with the daemon (PR_SET_PDEATHSIG), whatever they were doing.
    wait_until(lambda: not any(alive(p) for p in recorded_pids(folder / ".hpod" / "trials")),
               what="the trials to die with the daemon")
    return trials_of(folder, study)  # what the kill left in the file


def _runs(folder: Path, study: str, number: int) -> list[tuple[int, int]]:
    """(attempt, first step) of each start of a steady.py trial."""
    path = folder / ".hpod" / "trials" / study / f"{number:05d}" / "runs"
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def _state_count(trials: list[TrialRecord], state: TrialState) -> int:
    return sum(t.state is state for t in trials)


def test_kill_9_loses_nothing_and_resumes_from_checkpoints(tmp_path: Path, start_daemon) -> None:
    # Trials #2 and #3 are held after their report of step 3 (their checkpoint of step 2 is
    # stored before it): unheld, one could end, or another start, between the look and the kill.
    study, gate = _held(tmp_path, steady_study(trials=8), STEADY, at=3, who="from #2")
    write_study(tmp_path, "steady", study)
    daemon = start_daemon(tmp_path)
    left = kill_9_when(
        daemon, tmp_path, "steady",
        lambda ts: _state_count(ts, TrialState.COMPLETE) >= 2
        and sum(t.state is TrialState.RUNNING and t.checkpoint is not None
                and (t.last_step or 0) >= 3 for t in ts) == 2,
        "two complete trials and two running ones with a checkpoint")
    gate.touch()  # trials #4 to #7 run after the restart
    done_before = {t.number: t for t in left if t.state is TrialState.COMPLETE}
    running_before = {t.number: t for t in left if t.state is TrialState.RUNNING}
    assert len(running_before) == 2 and all(t.checkpoint for t in running_before.values())
    assert integrity(db_of(tmp_path)) == "ok"

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()

    trials = trials_of(tmp_path, "steady")
    assert [t.number for t in trials] == list(range(8))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    # Completed trials are the very same rows: never run again.
    for number, before in done_before.items():
        assert trials[number] == before
        assert _runs(tmp_path, "steady", number) == [(0, 1)]
    # Interrupted ones ran again with the same params, from their checkpoint, not from step 1.
    for number, before in running_before.items():
        after = trials[number]
        assert (after.id, after.params, after.attempt) == (before.id, before.params, 1)
        runs = _runs(tmp_path, "steady", number)
        assert runs[0] == (0, 1) and len(runs) == 2
        checkpoint_step = int(Path(before.checkpoint).read_text())
        assert runs[1][0] == 1 and runs[1][1] > checkpoint_step >= 2, runs
    # Trials that never started before the kill ran once.
    for trial in trials:
        if trial.number not in done_before and trial.number not in running_before:
            assert _runs(tmp_path, "steady", trial.number) == [(0, 1)]
    # The suggester went on with its sequence: no point proposed twice.
    assert len({t.params["x"] for t in trials}) == 8
    events = hpod_cli("events", tmp_path, "--limit", "200").stdout
    assert events.count("was running when the daemon stopped; it will run again from its "
                        "checkpoint") == 2
    assert integrity(db_of(tmp_path)) == "ok"


def test_a_grid_killed_twice_ends_with_exactly_the_grid(tmp_path: Path, start_daemon) -> None:
    space = ('x = { type = "float", low = 0.0, high = 1.0, step = 0.25 }\n'
             'act = { type = "categorical", choices = ["relu", "tanh", "gelu"] }')
    write_study(tmp_path, "grid", steady_study(trials=None, space=space,
                                               extra='suggester = { kind = "grid" }'))
    for complete_at_least in (3, 8):
        daemon = start_daemon(tmp_path)
        kill_9_when(daemon, tmp_path, "grid",
                    lambda ts, n=complete_at_least: _state_count(ts, TrialState.COMPLETE) >= n
                    and sum(t.state is TrialState.RUNNING and bool(t.last_step)
                            for t in ts) == 2,
                    f"{complete_at_least} complete grid trials and two running")
    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()

    trials = trials_of(tmp_path, "grid")
    points = [(t.params["x"], t.params["act"]) for t in trials]
    grid = list(itertools.product([0.0, 0.25, 0.5, 0.75, 1.0], ["relu", "tanh", "gelu"]))
    assert sorted(points) == sorted(grid)  # every point once: none repeated, none lost
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert study_status(tmp_path, "grid")["state"] == "complete"
    assert integrity(db_of(tmp_path)) == "ok"


def _asha_study(mode: str) -> str:
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 12 }}
parallel = 2
seed = 3
[scheduler]
kind = "asha"
min_resource = 1
max_resource = 9
reduction_factor = 3
mode = "{mode}"
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = 9
sleep = 0.04
"""


_HELD = """# The trial program argv[4], held after its report of step argv[2] until the file argv[1]
# exists; argv[3] says which runs: "all", "resumed" (from a checkpoint) or "from #2" (trial #2 on).
import runpy, sys, time
from pathlib import Path
import hpod.trial as trial

gate, at, who, program = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = {"all": True, "resumed": trial.resume_from() is not None,
        "from #2": (trial.trial_number() or 0) >= 2}[who]
report = trial.report

def held_report(step, /, **metrics):
    decision = report(step, **metrics)
    while held and step == at and not gate.exists():
        time.sleep(0.01)
    return decision

trial.report = held_report
sys.argv = [program]
runpy.run_path(program, run_name="__main__")
"""


def _held(folder: Path, study: str, program: Path = FIXTURE_TRIALS / "quadratic.py", *,
          at: int = 2, who: str = "all") -> tuple[str, Path]:
    """`study` (which runs `program`) with its trials held after their report of step `at` until
    the returned gate exists: the test then never has to catch a trial in the fraction of a
    second it runs unheld."""
    wrapper, gate = folder / "held.py", folder / "gate"
    wrapper.write_text(_HELD)
    held = study.replace(f'["python", "{program}"]',
                         f'["python", "{wrapper}", "{gate}", "{at}", "{who}", "{program}"]')
    assert held != study, "the study must run `program`"
    return held, gate


def _steps(folder: Path, study: str, trial_id: int) -> list[int]:
    with StoreReader(db_of(folder)) as reader:
        return [point.step for _id, point in reader.metrics(trial_id)]


def test_asha_pause_killed_while_a_promoted_trial_runs(tmp_path: Path, start_daemon) -> None:
    """The rungs come back from the stored reports: paused trials stay paused and are promoted
    or stopped later; a promoted trial the kill interrupted resumes from its checkpoint."""
    # A resumed run is held after its report of step 2: unheld, it may pass through "running
    # from its checkpoint" faster than a poll of the store can see it.
    study, gate = _held(tmp_path, _asha_study("pause"), who="resumed")
    write_study(tmp_path, "promo", study)
    daemon = start_daemon(tmp_path)
    left = kill_9_when(
        daemon, tmp_path, "promo",
        # Past rung 1 with a checkpoint: it was paused there, promoted, and resumed.
        lambda ts: any(t.state is TrialState.RUNNING and t.checkpoint is not None
                       and (t.last_step or 0) >= 2 for t in ts),
        "a promoted trial running from its checkpoint")
    gate.touch()
    resumed_before = [t for t in left if t.state is TrialState.RUNNING and t.checkpoint]
    paused_before = [t for t in left if t.state is TrialState.PAUSED]

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    trials = trials_of(tmp_path, "promo")
    assert len(trials) == 12, (study_status(tmp_path, "promo"), trials, restarted.log())
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.STOPPED}
    by_id = {t.id: t for t in trials}
    for before in resumed_before:
        steps = _steps(tmp_path, "promo", before.id)
        # Never from scratch: step 1 was reported once, before the first pause.
        assert steps.count(1) == 1, steps
        assert by_id[before.id].params == before.params
    for before in paused_before:
        after = by_id[before.id]
        assert _steps(tmp_path, "promo", before.id).count(1) == 1
        if after.state is TrialState.STOPPED:
            assert after.last_step in (1, 3), after
    for trial in trials:
        if trial.state is TrialState.COMPLETE:
            assert trial.last_step == 9
        else:
            assert trial.last_step in (1, 3), trial
    assert any(t.state is TrialState.STOPPED for t in trials), "the rungs must still stop losers"
    assert integrity(db_of(tmp_path)) == "ok"


def test_a_scheduler_study_survives_a_second_restart(tmp_path: Path, start_daemon) -> None:
    # Unheld, the study passes through "a running trial with stored reports" in a fraction of
    # a second (only its first two trials run past step 1) and ends in about two: a poll that
    # missed it waited out its whole timeout.
    study, gate = _held(tmp_path, _asha_study("stop"))
    write_study(tmp_path, "asha", study)
    daemon = start_daemon(tmp_path)
    left = kill_9_when(daemon, tmp_path, "asha",
                       lambda ts: any(t.state is TrialState.RUNNING and (t.last_step or 0) >= 2
                                      for t in ts),
                       "a running trial with stored reports")
    (victim,) = [t for t in left if t.state is TrialState.RUNNING and (t.last_step or 0) >= 2][:1]

    # It runs again from scratch (it has no checkpoint); stop the daemon cleanly meanwhile.
    daemon = start_daemon(tmp_path)
    wait_until(lambda: any(t.id == victim.id and t.state is TrialState.RUNNING and t.attempt == 1
                           for t in trials_of(tmp_path, "asha")),
               what="the interrupted trial to run again")
    assert daemon.terminate() == 0, daemon.log()
    gate.touch()  # the rerun was held too: it could not end before the test saw it running

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    status = study_status(tmp_path, "asha")
    assert status["state"] == "complete", status
    trials = trials_of(tmp_path, "asha")
    assert len(trials) == 12 and len({t.params["x"] for t in trials}) == 12
    stopped = [t for t in trials if t.state is TrialState.STOPPED]
    assert stopped and all(t.last_step in (1, 3) for t in stopped)
    assert all(t.last_step == 9 for t in trials if t.state is TrialState.COMPLETE)


def test_reports_after_a_pause_verdict_are_not_stored(tmp_path: Path, start_daemon) -> None:
    """A trial told to pause may report a step more before it exits; that step is not stored:
    the resumed run reports it again, and a replay after a restart must not mistake it for the
    start of a resumed run."""
    write_study(tmp_path, "linger", _asha_study("pause").replace(
        str(FIXTURE_TRIALS / "quadratic.py"), str(TRIALS / "lingering.py")))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    trials = trials_of(tmp_path, "linger")
    assert len(trials) == 12
    resumed = 0
    for trial in trials:
        steps = _steps(tmp_path, "linger", trial.id)
        assert steps == list(range(1, len(steps) + 1)), (trial, steps)  # each step once
        resumed += trial.state is TrialState.COMPLETE
        if trial.state is TrialState.STOPPED:
            assert trial.last_step in (1, 3) and steps[-1] == trial.last_step, trial
    assert resumed, "some trial must have been paused and promoted"


def test_what_a_trial_forked_does_not_outlive_a_kill_9_and_a_restart(tmp_path: Path,
                                                                     start_daemon) -> None:
    """The kernel kills a trial's main process with the daemon (PR_SET_PDEATHSIG) but not what
    it forked; the restart finds those by their trial folder and kills them before the trial
    runs again."""
    # The timeout ends the second run; the first must fork and be killed before it expires,
    # Python's start-up on a loaded machine included.
    write_study(tmp_path, "forks", fault_study("fork_run", trials=1,
                                               trial="timeout = 10\ngrace = 0.3"))
    daemon = start_daemon(tmp_path)
    child_pid = tmp_path / ".hpod" / "trials" / "forks" / "00000" / "child_pid"
    wait_until(child_pid.exists, what="the trial to fork")
    first_child = int(child_pid.read_text())
    daemon.process.kill()
    daemon.wait()

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    wait_until(lambda: not alive(first_child), what="the orphan of the first run to be killed")
    assert restarted.wait() == 1, restarted.log()  # its one trial timed out: no result
    (trial,) = trials_of(tmp_path, "forks")
    assert (trial.attempt, trial.reason) == (1, "timed out after 10 s")
    assert [p for p in recorded_pids(tmp_path / ".hpod" / "trials") if alive(p)] == []


def _saved_state(folder: Path, study: str) -> dict | None:
    with sqlite3.connect(db_of(folder)) as conn:
        row = conn.execute("SELECT suggester_state FROM studies WHERE name = ?", (study,)).fetchone()
    return None if row[0] is None else json.loads(row[0])


def _save_state(folder: Path, study: str, state: object) -> None:
    """`state` as JSON, or a str written as it is (to store what no hpod writes)."""
    text = state if isinstance(state, str) else json.dumps(state)
    with sqlite3.connect(db_of(folder)) as conn:
        conn.execute("UPDATE studies SET suggester_state = ? WHERE name = ?", (text, study))


def _kill_a_gp_study_midway(folder: Path, start_daemon) -> list[TrialRecord]:
    """A GP study (the hedge portfolio) killed with 4 of its 12 trials complete; the trials."""
    space = 'x = { type = "float", low = 0.0, high = 1.0 }'
    write_study(folder, "gp", steady_study(trials=12, space=space,
                                           extra='suggester = { kind = "gp", n_startup = 3 }')
                .replace("sleep = 0.05", "sleep = 0.15"))
    return kill_9_when(start_daemon(folder), folder, "gp",
                       lambda ts: _state_count(ts, TrialState.COMPLETE) >= 4,
                       "four complete GP trials")


def test_a_restarted_gp_study_goes_on_from_its_saved_state(tmp_path: Path, start_daemon) -> None:
    """The portfolio's gains are saved with every trial the suggester proposes and loaded after
    a restart, not relearned from zero. Shown by planting gains no study could reach in a few
    suggestions: the restarted daemon's later states carry them on."""
    left = _kill_a_gp_study_midway(tmp_path, start_daemon)
    state = _saved_state(tmp_path, "gp")
    assert state is not None and state["kind"] == "gp"
    state["hedge"]["gains"] = [500.0, -500.0]
    _save_state(tmp_path, "gp", state)

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    trials = trials_of(tmp_path, "gp")
    assert len(trials) == 12 > len(left), "the restarted daemon must propose new trials"
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    gains = _saved_state(tmp_path, "gp")["hedge"]["gains"]
    # Each suggestion adds a standardised posterior mean (a few units) to each gain.
    assert gains[0] > 400 and gains[1] < -400, gains
    events = hpod_cli("events", tmp_path, "--limit", "200").stdout
    assert "its gp suggester goes on from its saved state" in events
    assert "was not loaded" not in events


@pytest.mark.parametrize("bad", ['{"format": 0, "kind": "gp"}', "{not json",
                                 '{"format": 1, "kind": "gp", "deep": ' + "[" * 5000 + "]" * 5000
                                 + "}"], ids=["old format", "not JSON", "nested too deep"])
def test_a_saved_state_the_suggester_cannot_take_is_recorded_not_fatal(
        tmp_path: Path, start_daemon, bad: str) -> None:
    left = _kill_a_gp_study_midway(tmp_path, start_daemon)
    _save_state(tmp_path, "gp", bad)

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    trials = trials_of(tmp_path, "gp")
    assert len(trials) == 12 > len(left)
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.params["x"] for t in trials}) == 12
    events = hpod_cli("events", tmp_path, "--limit", "200").stdout
    assert "the saved state of its gp suggester was not loaded" in events
    assert "goes on from its saved state" not in events
    assert _saved_state(tmp_path, "gp")["format"] == 1  # replaced by the next suggestion's


def test_a_study_switched_to_a_suggester_without_state_drops_the_saved_one(
        tmp_path: Path, start_daemon) -> None:
    """gp, then random while the daemon was down: the GP's state is cleared, so switching back
    later cannot pick up a warm start and gains from a search that went on without them."""
    _kill_a_gp_study_midway(tmp_path, start_daemon)
    assert _saved_state(tmp_path, "gp") is not None
    study = tmp_path / "gp.toml"
    write_study(tmp_path, "gp", study.read_text().replace('kind = "gp", n_startup = 3',
                                                          'kind = "random"'))
    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    assert len(trials_of(tmp_path, "gp")) == 12
    assert _saved_state(tmp_path, "gp") is None


def test_a_gp_study_killed_midway_proposes_what_an_uninterrupted_one_does(
        tmp_path: Path, start_daemon) -> None:
    """One trial at a time, the same seed: the points of a study killed with 4 trials complete
    and restarted are, trial by trial, those of the same study run without a stop. Without the
    saved state the restarted GP refits from its defaults and starts its portfolio afresh."""
    space = 'x = { type = "float", low = 0.0, high = 1.0 }'
    study = (steady_study(trials=9, space=space, extra='suggester = { kind = "gp", n_startup = 3 }')
             .replace("sleep = 0.05", "sleep = 0.1").replace("parallel = 2", "parallel = 1"))
    calm, killed = tmp_path / "calm", tmp_path / "killed"
    for folder in (calm, killed):
        folder.mkdir()
        write_study(folder, "gp", study)
    uninterrupted = start_daemon(calm, "--exit-when-idle")
    assert uninterrupted.wait() == 0, uninterrupted.log()
    kill_9_when(start_daemon(killed), killed, "gp",
                lambda ts: _state_count(ts, TrialState.COMPLETE) >= 4, "four complete trials")
    restarted = start_daemon(killed, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()

    expected = [t.params for t in trials_of(calm, "gp")]
    assert len(expected) == 9
    assert [t.params for t in trials_of(killed, "gp")] == expected


_IN_PAIRS = """# The trial program argv[3], run so that trials end in a fixed order that is not trial order:
# an even trial #n ends after #n+1 has completed and #n+2 exists (or the budget argv[2] has no
# #n+2), read from the store argv[1]; an odd one ends as soon as it is done.
import runpy, sys, time
from pathlib import Path
import hpod.trial as trial
from hpod.store import StoreReader, StoreUnavailable, TrialState

db, budget, program = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.argv = [program]
runpy.run_path(program, run_name="__main__")
number = trial.trial_number() or 0

def partner_done() -> bool:
    try:
        with StoreReader(db) as reader:
            trials = reader.list_trials(reader.find_study("pairs").id)
    except StoreUnavailable:
        return False
    by_number = {t.number: t for t in trials}
    partner = by_number.get(number + 1)
    return (partner is not None and partner.state is TrialState.COMPLETE
            and (number + 2 >= budget or number + 2 in by_number))

while number % 2 == 0 and not partner_done():
    time.sleep(0.02)
"""


def test_a_gp_study_with_two_trials_at_once_killed_midway_proposes_what_an_uninterrupted_one_does(
        tmp_path: Path, start_daemon) -> None:
    """Two trials at once, which end in the order 1, 0, 3, 2, ... (a wrapper holds each even
    trial until the next one has completed and the one after exists, so every suggestion sees
    the same results and pending points in every run). A restart tells the GP the results in the
    order they ended, as it was told them live: in trial order its fit would differ by a
    rounding, and the points after the restart with it."""
    space = 'x = { type = "float", low = 0.0, high = 1.0 }'
    budget = 10
    study = steady_study(trials=budget, space=space,
                         extra='suggester = { kind = "gp", n_startup = 3 }')
    calm, killed = tmp_path / "calm", tmp_path / "killed"
    for folder in (calm, killed):
        folder.mkdir()
        wrapper = folder / "pairs.py"
        wrapper.write_text(_IN_PAIRS)
        paired = study.replace(f'["python", "{STEADY}"]', f'["python", "{wrapper}", '
                               f'"{db_of(folder)}", "{budget}", "{STEADY}"]')
        assert paired != study
        write_study(folder, "pairs", paired)
    uninterrupted = start_daemon(calm, "--exit-when-idle")
    assert uninterrupted.wait() == 0, uninterrupted.log()
    ended = sorted(trials_of(calm, "pairs"), key=lambda t: t.finished_at or 0.0)
    assert [t.number for t in ended][:4] == [1, 0, 3, 2]  # the order the wrapper imposes
    kill_9_when(start_daemon(killed), killed, "pairs",
                lambda ts: _state_count(ts, TrialState.COMPLETE) >= 5, "five complete trials")
    restarted = start_daemon(killed, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()

    expected = [t.params for t in trials_of(calm, "pairs")]
    assert len(expected) == budget
    assert [t.params for t in trials_of(killed, "pairs")] == expected


def test_a_gp_study_on_a_time_budget_learns_what_its_trials_cost_across_a_restart(
        tmp_path: Path, start_daemon) -> None:
    """With hours in its budget a GP study weighs points by their cost (EI per second): each
    report is timed, and a restart reads those times back from the stored reports. Shown by the
    cost GP of the last suggestion, fitted on the costs of the trials from before the kill too:
    without them it would have at most the 5 trials measured since."""
    space = ('x = { type = "float", low = 0.0, high = 1.0 }\n'
             'sleep = { type = "float", low = 0.02, high = 0.1 }')
    study = (steady_study(trials=12, space=space, extra='suggester = { kind = "gp", n_startup = 3 }')
             .replace("budget = { trials = 12 }", "budget = { trials = 12, hours = 1 }")
             .replace("sleep = 0.05\n", ""))
    write_study(tmp_path, "costly", study)
    kill_9_when(start_daemon(tmp_path), tmp_path, "costly",
                lambda ts: _state_count(ts, TrialState.COMPLETE) >= 6, "six complete trials")
    assert _saved_state(tmp_path, "costly")["cost_model"]["params"] is not None

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    trials = trials_of(tmp_path, "costly")
    assert len(trials) == 12 and {t.state for t in trials} == {TrialState.COMPLETE}
    # The 12th suggestion came after at least 9 trials had reported: 6 complete and up to 2
    # running at the kill (timed by the first daemon), and at least one since.
    assert _saved_state(tmp_path, "costly")["cost_model"]["fitted_at"] >= 8


_SAVING = """# The trial program argv[2]; its first run, once it has trained and checkpointed its last
# step, waits for the file argv[1] before it exits (as a trial saving its model would).
import os, runpy, sys, time
from pathlib import Path
gate, program = Path(sys.argv[1]), sys.argv[2]
sys.argv = [program]
runpy.run_path(program, run_name="__main__")
while os.environ["HPOD_ATTEMPT"] == "0" and not gate.exists():
    time.sleep(0.01)
"""


def test_a_trial_killed_after_its_last_checkpoint_is_complete_after_the_restart(
        tmp_path: Path, start_daemon) -> None:
    """Killed after its last epoch's report and checkpoint, while it saved its model: resumed
    from that checkpoint it has nothing left to train and exits without a report. It is complete
    with the value it reported before the kill, not failed for never reporting."""
    wrapper = tmp_path / "saving.py"
    wrapper.write_text(_SAVING)
    study = steady_study(trials=1).replace(
        f'["python", "{STEADY}"]', f'["python", "{wrapper}", "{tmp_path / "gate"}", "{STEADY}"]')
    write_study(tmp_path, "saving", study)
    (before,) = kill_9_when(
        start_daemon(tmp_path), tmp_path, "saving",
        lambda ts: len(ts) == 1 and ts[0].last_step == 10
        and (ts[0].checkpoint or "").endswith("ckpt-10"),
        "the last step and its checkpoint")
    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    (trial,) = trials_of(tmp_path, "saving")
    assert trial.state is TrialState.COMPLETE, trial.reason
    assert (trial.value, trial.last_step) == (before.value, 10)
    runs = (tmp_path / ".hpod" / "trials" / "saving" / "00000" / "runs").read_text().split()
    assert runs == ["0", "1", "1", "11"]  # the second run resumed past the last step


def test_a_trial_that_ended_by_itself_stays_complete_when_the_daemon_stops_while_it_drains(
        tmp_path: Path, start_daemon) -> None:
    # The trial exits 0; its last reports are still being read and written (here: a process it
    # left holds the pipe open, so the daemon waits for the pipe to drain) when SIGTERM comes.
    # It was recorded "interrupted" and ran again at the next start.
    import os
    import signal

    write_study(tmp_path, "held", f"""
command = ["python", "{TRIALS / 'leaves_pipe_open.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    daemon = start_daemon(tmp_path)
    folder = tmp_path / ".hpod" / "trials" / "held" / "00000"

    def exited_with_the_holder_left() -> int | None:
        try:
            pid, holder = (int((folder / name).read_text()) for name in ("pid", "holder"))
        except (OSError, ValueError):
            return None
        return holder if not alive(pid) else None

    holder = wait_until(exited_with_the_holder_left, what="the trial's exit, its holder left")
    try:
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.log()
        # In a session of its own the holder escaped the group kill; closing the trial ended
        # it by the trial folder in its environment.
        wait_until(lambda: not alive(holder), what="the holder to be gone")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGKILL)
    (trial,) = trials_of(tmp_path, "held")
    assert (trial.state, trial.value, trial.attempt) == (TrialState.COMPLETE, 0.25, 0), daemon.log()
    # The next start finds the budget spent: nothing runs again.
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    assert [(t.state, t.attempt) for t in trials_of(tmp_path, "held")] == [(TrialState.COMPLETE, 0)]
    assert study_status(tmp_path, "held")["state"] == "complete"
