"""hpod.trial in-process against real os.pipe pairs (the daemon's side played by the test)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from hpod.decision import Decision
from hpod.trial import TrialClient
from hpod.wire import CheckpointNote, Report, encode_decision, parse_line


class Pipes:
    """The daemon's ends of a report pipe and a control pipe, plus a client on the other ends."""

    def __init__(self, timeout: float | str, **env: str) -> None:
        self.report_r, self.report_w = os.pipe()
        self.control_r, self.control_w = os.pipe()
        self.env = {"HPOD_REPORT_FD": str(self.report_w), "HPOD_CONTROL_FD": str(self.control_r),
                    "HPOD_DECISION_TIMEOUT": str(timeout), **env}
        self.client = TrialClient(self.env)
        self._pending = b""

    def answer(self, decision: str, step: int | None) -> None:
        os.write(self.control_w, encode_decision(Decision(decision), step))

    def read_message(self) -> object:
        while b"\n" not in self._pending:
            chunk = os.read(self.report_r, 65536)
            assert chunk, "report pipe closed"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return parse_line(line)

    def close(self) -> None:
        for fd in (self.report_r, self.report_w, self.control_r, self.control_w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def make_pipes() -> Iterator:
    made: list[Pipes] = []

    def create(timeout: float | str = 30, **env: str) -> Pipes:
        made.append(Pipes(timeout, **env))
        return made[-1]

    yield create
    for pipes in made:
        pipes.close()


def test_decision_round_trip_with_a_daemon_thread(make_pipes) -> None:
    pipes = make_pipes(timeout=60)
    answers = {0: "continue", 1: "continue", 2: "stop"}

    def daemon() -> None:
        for _ in answers:
            msg = pipes.read_message()
            assert isinstance(msg, Report)
            pipes.answer(answers[msg.step], msg.step)

    with ThreadPoolExecutor(1) as pool:
        served = pool.submit(daemon)
        got = [pipes.client.report(step, loss=1.0 / (step + 1)) for step in answers]
        served.result(timeout=60)
    assert got == ["continue", "continue", "stop"]
    assert got[2] is Decision.STOP
    assert pipes.client.should_stop()


def test_report_line_is_what_the_daemon_parses(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    pipes.client.report(5, loss=0.5, acc=1, nan=math.nan)
    msg = pipes.read_message()
    assert isinstance(msg, Report) and msg.step == 5
    assert msg.metrics["loss"] == 0.5 and msg.metrics["acc"] == 1.0
    assert math.isnan(msg.metrics["nan"])


def test_no_answer_in_time_carries_on(make_pipes) -> None:
    pipes = make_pipes(timeout=0.05)
    assert pipes.client.report(0, loss=1.0) == "continue"
    assert isinstance(pipes.read_message(), Report)


def test_a_late_answer_is_discarded_by_its_step(make_pipes) -> None:
    pipes = make_pipes(timeout=30)
    # The answer to step 2 arrives after the trial stopped waiting for it, ahead of step 3's.
    pipes.answer("stop", 2)
    pipes.answer("continue", 3)
    assert pipes.client.report(3, loss=1.0) == "continue"
    assert not pipes.client.should_stop()


def test_zero_timeout_takes_only_what_has_arrived(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    assert pipes.client.report(0, loss=1.0) == "continue"  # nothing there: no waiting
    for step in range(100):  # a daemon that answers anyway: the answers are drained
        pipes.answer("continue", step)
    assert pipes.client.report(1, loss=1.0) == "continue"
    pipes.answer("stop", None)  # the user stopped the trial
    assert pipes.client.report(2, loss=1.0) == "stop"
    assert pipes.client.report(3, loss=1.0) == "stop", "a stop is final"


def test_unsolicited_stop_wins_over_the_answer(make_pipes) -> None:
    pipes = make_pipes(timeout=30)
    pipes.answer("stop", None)
    pipes.answer("continue", 0)
    assert pipes.client.report(0, loss=1.0) == "stop"


def test_a_stop_right_behind_the_answer_is_not_lost(make_pipes) -> None:
    pipes = make_pipes(timeout=30)
    os.write(pipes.control_w, encode_decision(Decision.CONTINUE, 0)
             + encode_decision(Decision.STOP, None))  # one read gets both lines
    assert pipes.client.report(0, loss=1.0) == "stop"
    assert pipes.client.should_stop()


def test_any_metric_name_but_the_reserved_ones(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    pipes.client.report(1, self=1.0, metrics=2.0)
    assert pipes.read_message() == Report(1, {"self": 1.0, "metrics": 2.0})
    with pytest.raises(ValueError, match="invalid metric name"):
        pipes.client.report(1, step=2.0)
    with pytest.raises(ValueError, match="invalid metric name"):
        pipes.client.report(1, checkpoint=2.0)


def test_unsolicited_pause_and_continue(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    pipes.answer("continue", None)  # means nothing on its own
    assert not pipes.client.should_stop()
    pipes.answer("pause", None)
    assert pipes.client.should_stop()
    assert pipes.client.report(0, loss=1.0) == "pause"


def test_garbage_on_the_control_pipe_is_ignored(make_pipes) -> None:
    pipes = make_pipes(timeout=30)

    def daemon() -> None:  # more than a pipe holds: written while the client reads
        os.write(pipes.control_w, b'not json\n{"decision": "explode", "step": 0}\n[]\n'
                 + b"x" * 100_000 + b"\n")
        pipes.answer("stop", 0)

    with ThreadPoolExecutor(1) as pool:
        served = pool.submit(daemon)
        assert pipes.client.report(0, loss=1.0) == "stop"
        served.result(timeout=60)


def test_control_pipe_eof_carries_on_without_waiting(make_pipes) -> None:
    pipes = make_pipes(timeout=600)
    os.close(pipes.control_w)
    with ThreadPoolExecutor(1) as pool:
        # Would block for 600 s if EOF were not noticed.
        assert pool.submit(pipes.client.report, 0, loss=1.0).result(timeout=60) == "continue"
        assert pool.submit(pipes.client.report, 1, loss=1.0).result(timeout=60) == "continue"
    assert isinstance(pipes.read_message(), Report)


def test_broken_report_pipe_becomes_a_no_op_with_one_message(make_pipes, capsys) -> None:
    pipes = make_pipes(timeout=600)
    os.close(pipes.report_r)
    assert pipes.client.report(0, loss=1.0) == "continue"
    assert pipes.client.report(1, loss=1.0) == "continue"
    pipes.client.checkpoint("/tmp/x")
    err = capsys.readouterr().err
    assert err.count("hpod.trial") == 1 and "carries on" in err


def test_checkpoint_sends_an_absolute_path(make_pipes, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    pipes = make_pipes(timeout=0)
    pipes.client.checkpoint("ckpt/model.keras")
    assert pipes.read_message() == CheckpointNote(str(tmp_path / "ckpt" / "model.keras"))


def test_reports_from_two_threads_get_their_own_answers(make_pipes) -> None:
    pipes = make_pipes(timeout=60)
    steps = list(range(40))

    def daemon() -> None:
        for _ in steps:
            msg = pipes.read_message()
            assert isinstance(msg, Report)
            pipes.answer("continue", msg.step)

    with ThreadPoolExecutor(3) as pool:
        served = pool.submit(daemon)
        results = list(pool.map(lambda s: pipes.client.report(s, loss=float(s)), steps))
        served.result(timeout=60)
    assert results == ["continue"] * len(steps)


def test_invalid_reports_raise_before_anything_is_sent(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    with pytest.raises(ValueError):
        pipes.client.report(-1, loss=1.0)
    with pytest.raises(ValueError):
        pipes.client.report(0, loss="low")
    os.close(pipes.report_w)
    assert os.read(pipes.report_r, 10) == b""


def test_environment_facts(tmp_path) -> None:
    client = TrialClient({
        "HPOD_PARAMS": json.dumps({"lr": 0.1, "act": "relu"}), "HPOD_TRIAL_ID": "abc",
        "HPOD_TRIAL_NUMBER": "7", "HPOD_STUDY": "digits", "HPOD_TRIAL_DIR": str(tmp_path),
        "HPOD_RESUME_FROM": str(tmp_path / "ckpt"),
    })
    assert client.params(defaults={"lr": 1.0, "units": 8}) == {"lr": 0.1, "act": "relu",
                                                               "units": 8}
    assert client.trial_id() == "abc" and client.trial_number() == 7
    assert client.study() == "digits"
    assert client.trial_dir() == tmp_path
    assert client.resume_from() == tmp_path / "ckpt"


def test_outside_hpod_everything_is_a_harmless_default(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    client = TrialClient({})
    assert not client.attached
    assert client.params() == {}
    assert client.params(defaults={"lr": 0.1}) == {"lr": 0.1}
    assert client.report(0, loss=1.0) == "continue"
    assert not client.should_stop()
    client.checkpoint("x")
    assert client.trial_dir() == tmp_path
    assert client.resume_from() is None
    assert client.trial_id() is None and client.trial_number() is None
    assert client.study() is None


@pytest.mark.parametrize("raw", ["not json", "[1, 2]"])
def test_bad_params_say_so(raw: str) -> None:
    with pytest.raises(ValueError, match="HPOD_PARAMS"):
        TrialClient({"HPOD_PARAMS": raw}).params()


def test_module_functions_outside_hpod(tmp_path) -> None:
    # A fresh interpreter, so the module's own client is built from this environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    env["HPOD_PARAMS"] = '{"lr": 0.5}'
    code = ("import hpod.trial as t; "
            "print(t.params(defaults={'lr': 1, 'u': 2}), t.report(0, loss=1.0), "
            "t.should_stop(), t.resume_from(), t.trial_id(), t.study())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["{'lr':", "0.5,", "'u':", "2}", "continue", "False", "None",
                                  "None", "None"]


def test_importing_the_client_stays_light() -> None:
    heavy = ["numpy", "scipy", "aiosqlite", "textual", "tensorflow", "asyncio"]
    code = ("import sys, hpod.trial; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_the_client_does_not_leak_its_pipes_to_programs_it_starts(make_pipes) -> None:
    pipes = make_pipes(timeout=0)
    os.set_inheritable(pipes.report_w, True)
    TrialClient(pipes.env)
    assert not os.get_inheritable(pipes.report_w)
    assert not os.get_inheritable(pipes.control_r)


def test_a_trial_dir_path_is_a_path() -> None:
    assert isinstance(TrialClient({"HPOD_TRIAL_DIR": "/x"}).trial_dir(), Path)


def test_a_sigterm_handler_can_save_a_checkpoint_while_a_report_waits_for_its_answer(
        make_pipes) -> None:
    # The documented pattern: on SIGTERM save a checkpoint and announce it. The handler runs on
    # the main thread while report() waits for its answer, holding the client's lock; it
    # deadlocked (the trial hung until SIGKILL and the checkpoint was never announced).
    import signal

    pipes = make_pipes(timeout=30)
    announced: list[str] = []

    def on_term(signum, frame) -> None:
        pipes.client.checkpoint("/tmp/ckpt-7")
        announced.append("yes")

    def daemon_side() -> object:
        report = pipes.read_message()
        os.kill(os.getpid(), signal.SIGUSR1)  # arrives while the main thread waits
        checkpoint = pipes.read_message()
        pipes.answer("continue", 7)
        return report, checkpoint

    previous = signal.signal(signal.SIGUSR1, on_term)
    try:
        with ThreadPoolExecutor(1) as pool:
            seen = pool.submit(daemon_side)
            assert pipes.client.report(7, loss=0.5) == Decision.CONTINUE
            report, checkpoint = seen.result(timeout=30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert announced == ["yes"]
    assert report == Report(7, {"loss": 0.5})
    assert checkpoint == CheckpointNote("/tmp/ckpt-7")
