"""hpod.keras.Reporter in a real Keras trial (TensorFlow on the CPU), run by the daemon's executor.

Each test starts the trial script below as a real subprocess through LocalExecutor and plays the
daemon's side of the pipes: it answers reports with the decisions a scheduler would give.
TensorFlow is imported only by those trial processes, never by the test process (importing it
here would put its threads into every later fork of the test session); the module is skipped
where TensorFlow is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("TensorFlow is not installed", allow_module_level=True)

from hpod.decision import Decision  # noqa: E402
from hpod.executor import LocalExecutor  # noqa: E402
from hpod.executor.base import TrialExit  # noqa: E402
from hpod.wire import CheckpointNote, Report  # noqa: E402

WAIT = 180.0  # TensorFlow starts slowly on a loaded 2-core box; the trial's end ends the wait

TRIAL = """
import json, os
import numpy as np
import keras
import hpod.keras, hpod.trial

out = hpod.trial.trial_dir()
keras.utils.set_random_seed(int(os.environ["SEED"]))
x = np.random.RandomState(0).rand(64, 4).astype("float32")
y = x.sum(axis=1, keepdims=True)
reporter = hpod.keras.Reporter(objective="val_loss")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")


def fingerprint(**extra):
    return json.dumps({"weights": [w.tolist() for w in model.get_weights()],
                       "iterations": int(model.optimizer.iterations), **extra})


class Record(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        (out / f"after-epoch-{epoch + 1}.json").write_text(fingerprint())


start = reporter.restore(model)
(out / f"start-{os.environ['SEED']}.json").write_text(fingerprint(epoch=start))
history = model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=16, verbose=0,
                    initial_epoch=start, callbacks=[Record(), reporter])
(out / "finished.json").write_text(json.dumps({"epochs": history.epoch,
                                               "stopped": reporter.stopped}))
"""


async def run_trial(tmp_path: Path, answers: dict[int, str], *, seed: int,
                    resume_from: str | None = None, source: str = TRIAL,
                    ) -> tuple[TrialExit, list[Report], list[str]]:
    """Run the trial to its end, answering each report; its exit, reports and checkpoints."""
    script = tmp_path / "train.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPOD_", "CUDA_"))}
    env.update(HPOD_DECISION_TIMEOUT="120", HPOD_TRIAL_DIR=str(tmp_path / "trial"),
               SEED=str(seed), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    if resume_from is not None:
        env["HPOD_RESUME_FROM"] = resume_from
    reports: list[Report] = []
    checkpoints: list[str] = []
    async with asyncio.timeout(WAIT):
        trial = await LocalExecutor().launch([sys.executable, str(script)], env=env,
                                             cwd=tmp_path, trial_dir=tmp_path / "trial")
        async with trial:
            async for message in trial.messages():
                if isinstance(message, Report):
                    reports.append(message)
                    trial.decide(Decision(answers.get(message.step, "continue")), message.step)
                elif isinstance(message, CheckpointNote):
                    checkpoints.append(message.path)
            return await trial.wait(), reports, checkpoints


def read(path: Path) -> dict:
    return json.loads(path.read_text())


async def test_pause_checkpoints_and_exits_then_resume_restores_and_stop_ends_training(
        tmp_path: Path) -> None:
    # Two trial processes only: TensorFlow takes seconds to import on a small box.
    trial_dir = tmp_path / "trial"
    exit_, reports, checkpoints = await run_trial(tmp_path, {2: "pause"}, seed=0)
    assert exit_.returncode == 0, exit_.describe()
    assert [r.step for r in reports] == [1, 2]
    assert set(reports[0].metrics) == {"loss", "val_loss", "epoch"}  # all the logs, one report
    assert [r.metrics["epoch"] for r in reports] == [1.0, 2.0]
    assert checkpoints == [str(trial_dir / "keras-checkpoint")]
    assert read(trial_dir / "keras-checkpoint" / "hpod-keras.json") == {
        "format": 1, "epoch": 2, "model": "model-000002.keras"}
    assert not (trial_dir / "finished.json").exists()  # nothing after fit ran: it exited
    paused_at = read(trial_dir / "after-epoch-2.json")
    assert paused_at["iterations"] == 8  # 2 epochs of 4 batches

    # The daemon resumes it with HPOD_RESUME_FROM; a different seed starts other weights.
    exit_, reports, checkpoints = await run_trial(tmp_path, {3: "stop"}, seed=1,
                                                  resume_from=checkpoints[0])
    assert exit_.ok, exit_.describe()
    restored = read(trial_dir / "start-1.json")
    assert restored["epoch"] == 2
    assert restored["weights"] == paused_at["weights"]
    assert restored["iterations"] == paused_at["iterations"]  # the optimizer's state came back
    assert [r.step for r in reports] == [3] and reports[0].metrics["epoch"] == 3.0
    assert checkpoints == []
    # "stop" at epoch 3 of 4: fit returned early and the script went on to its end by itself.
    assert read(trial_dir / "finished.json") == {"epochs": [2], "stopped": True}


# The tests append the fits to run, each with the Reporter's objective and fit's arguments; the
# outcome of each (or the Reporter's error) goes to a file named after it.
VALIDATION_TRIAL = """
import json
import numpy as np
import keras
import hpod.keras, hpod.trial

out = hpod.trial.trial_dir()
keras.utils.set_random_seed(0)
x = np.random.RandomState(0).rand(64, 4).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")


def fit(name, objective, **kwargs):
    reporter = hpod.keras.Reporter(objective=objective)
    try:
        history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[reporter],
                            **kwargs)
        outcome = {"epochs": history.epoch, "stopped": reporter.stopped}
    except ValueError as e:
        outcome = {"error": str(e)}
    (out / f"{name}.json").write_text(json.dumps(outcome))
"""


async def test_epochs_without_validation_report_without_the_objective_and_obey_stop(
        tmp_path: Path) -> None:
    # validation_freq=2: only epochs 2 and 4 have val_loss. "stop" at epoch 3, one without
    # it, is what a user's stop looks like (the scheduler judges only reports with it).
    fits = 'fit("every-other-epoch", "val_loss", validation_split=0.25, validation_freq=2)\n'
    exit_, reports, _ = await run_trial(tmp_path, {3: "stop"}, seed=0,
                                        source=VALIDATION_TRIAL + fits)
    assert exit_.ok, exit_.describe()
    assert [r.step for r in reports] == [1, 2, 3]
    assert [set(r.metrics) for r in reports] == [
        {"loss", "epoch"}, {"loss", "val_loss", "epoch"}, {"loss", "epoch"}]
    assert read(tmp_path / "trial" / "every-other-epoch.json") == {"epochs": [0, 1, 2],
                                                                   "stopped": True}


async def test_an_objective_keras_never_logs_fails_once_its_absence_is_certain(
        tmp_path: Path) -> None:
    # One process for both fits: TensorFlow takes seconds to import on a small box.
    fits = ('fit("unvalidated", "val_loss")\n'
            'fit("misspelt", "val_los", validation_split=0.25, validation_freq=2)\n')
    exit_, reports, _ = await run_trial(tmp_path, {}, seed=0, source=VALIDATION_TRIAL + fits)
    assert exit_.ok, exit_.describe()
    # No validation data: all 4 epochs are reported, then the end of training is the error.
    # The misspelt name passes epoch 1 (not validated) and fails at epoch 2 (validated),
    # before its report.
    assert [r.step for r in reports] == [1, 2, 3, 4, 1]
    unvalidated = read(tmp_path / "trial" / "unvalidated.json")["error"]
    assert "'val_loss' never appeared" in unvalidated
    assert "pass validation_data (or validation_split) to fit" in unvalidated
    misspelt = read(tmp_path / "trial" / "misspelt.json")["error"]
    assert "'val_los' is not in Keras's logs ['loss', 'val_loss']" in misspelt
