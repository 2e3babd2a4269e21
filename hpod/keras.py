"""A Keras model as an hpod trial in one line: report every epoch, obey stop and pause, resume.

    import hpod.keras

    reporter = hpod.keras.Reporter()            # before building the model (see the memory cap)
    model = build_model()                       # compiled
    model.fit(x, y, validation_data=(xv, yv), epochs=30,
              initial_epoch=reporter.restore(model),   # 0 unless the trial is resumed
              callbacks=[reporter])

At the end of each epoch every number in Keras's logs goes to the daemon as one report, at step
= epochs done (also reported as the metric `epoch`, the scheduler's usual resource). An epoch
that fit does not validate (`validation_freq=2`, say) is reported without its `val_` metrics:
the daemon stores it, keeps the trial's last objective value and answers "continue" unless a
stop or pause is already due, since the scheduler can judge only a report with the objective.
The answer:
- "stop": `model.stop_training = True`; fit returns and the script goes on (a final evaluation,
  say) and exits by itself;
- "pause": the model (weights and optimizer state) and the epoch are saved under the trial's
  folder, the daemon is told where, training stops, and — once fit has returned — the process
  exits with code 0 by raising SystemExit(0) from `on_train_end` (`exit_on_pause=False` instead
  leaves it to the script: check `reporter.paused` after fit). A paused trial is not finished,
  so code after fit must not run as if it were: exiting is what the daemon waits for.
- on resume (HPOD_RESUME_FROM set by the daemon), `restore(model)` loads that checkpoint and
  returns the epoch to continue from.
Creating a Reporter declares the trial resumable (hpod.trial.declare_resumable): without that
declaration the daemon never pauses a trial.

Keras and TensorFlow are imported when a Reporter is created, never by `import hpod.keras`.
The GPU memory cap (HPOD_GPU_MEMORY_LIMIT_MB, from `[resources] gpu_memory_limit`) is applied
when the Reporter is created; TensorFlow accepts it only before it touches the GPU, hence
"create the Reporter before building the model" (or call `limit_gpu_memory()` first).
Memory growth on a shared GPU needs no code: the daemon sets TF_FORCE_GPU_ALLOW_GROWTH.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hpod.trial

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "keras-checkpoint"
STATE_FILE = "hpod-keras.json"
_RESERVED = ("step", "checkpoint", "resumable")  # names with a meaning of their own on the report pipe


def limit_gpu_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Cap TensorFlow's memory on each visible GPU at HPOD_GPU_MEMORY_LIMIT_MB, when set.

    Returns True when a cap was applied. Must run before TensorFlow first uses a GPU; later,
    it logs a warning and changes nothing. Only the TensorFlow backend is capped.
    """
    env = os.environ if environ is None else environ
    raw = env.get("HPOD_GPU_MEMORY_LIMIT_MB", "")
    if not raw:
        return False
    try:
        limit = int(raw)
    except ValueError:
        logger.warning("HPOD_GPU_MEMORY_LIMIT_MB=%r is not a number of MiB: no cap", raw)
        return False
    import keras

    if keras.backend.backend() != "tensorflow":
        logger.warning("the GPU memory cap applies to the TensorFlow backend only (this is %s)",
                       keras.backend.backend())
        return False
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
    except RuntimeError as e:  # "Virtual devices cannot be modified after being initialized"
        logger.warning("GPU memory cap of %d MiB not applied: TensorFlow already uses the GPU "
                       "(create hpod.keras.Reporter() before building the model): %s", limit, e)
        return False
    return bool(gpus)


def resume_state(resume_from: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The saved state (epoch, model file) of the checkpoint to resume from, or None.

    `resume_from` defaults to HPOD_RESUME_FROM: a checkpoint folder written by a Reporter (or
    its JSON file). Raises FileNotFoundError when it names a checkpoint that is not there.
    """
    path = hpod.trial.resume_from() if resume_from is None else Path(resume_from)
    return None if path is None else _read_state(path)


def _read_state(path: Path) -> dict[str, Any]:
    state_file = path / STATE_FILE if path.is_dir() else path
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"the checkpoint to resume from is missing: {state_file} "
                                "(HPOD_RESUME_FROM); was the trial folder moved or cleaned?"
                                ) from None
    except ValueError as e:
        raise ValueError(f"the checkpoint state {state_file} is not valid JSON: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("model"), str) \
            or not isinstance(state.get("epoch"), int):
        raise ValueError(f"{state_file} is not a checkpoint state written by hpod.keras")
    state["model_path"] = str(state_file.parent / state["model"])
    return state


def initial_epoch(resume_from: str | os.PathLike[str] | None = None) -> int:
    """The epoch a resumed trial continues from (0 when it is not resumed)."""
    state = resume_state(resume_from)
    return 0 if state is None else int(state["epoch"])


def restore(model: Any, resume_from: str | os.PathLike[str] | None = None) -> int:
    """Load the checkpoint to resume from into `model`; return the epoch to continue from.

    Restores the weights and the optimizer's state (compile the model first); returns 0 and
    changes nothing when the trial is not resumed.
    """
    return _restore(model, resume_state(resume_from))


def _restore(model: Any, state: Mapping[str, Any] | None) -> int:
    if state is None:
        return 0
    if not model.built:
        raise ValueError("build the model before restoring it (start it with keras.Input(...) "
                         "or call model.build(input_shape))")
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not getattr(optimizer, "built", True):
        # An unbuilt optimizer has no slots to load into: its saved state would be skipped.
        optimizer.build(model.trainable_variables)
    model.load_weights(state["model_path"])
    logger.info("resumed from %s at epoch %d", state["model_path"], state["epoch"])
    return int(state["epoch"])


class Reporter:
    """Keras callback: one report per epoch, "stop" ends fit, "pause" checkpoints and exits.

    objective: the metric the study optimises; when given, a name Keras does not log is an
        error (ValueError out of fit). A `val_` objective may be absent from an epoch that fit
        did not validate (validation_freq): that epoch is reported without it. It is an error
        when missing from an epoch that was validated (a misspelt name), or when training ends
        without it ever appearing (fit got no validation data).
    resource: the name under which the number of epochs done is reported too (None: not).
    client: what reports go through; hpod.trial (the environment's pipes) by default.
    exit_on_pause: raise SystemExit(0) once fit returns after a pause.
    checkpoint_dir: where a pause saves; `<trial folder>/keras-checkpoint` by default.
    """

    model: Any  # the model being trained: Keras sets it (Callback.set_model) before fit starts

    def __new__(cls, *args: Any, **kwargs: Any) -> Reporter:
        # Keras is imported here, not at module import: the instance is of a subclass that is
        # also a keras Callback (a user's own subclass of Reporter gets the same treatment).
        # A class is hashable; mypy checks the signature of the instances' __hash__ instead.
        return super().__new__(_with_keras(cls))  # type: ignore[arg-type]

    def __init__(self, objective: str | None = None, resource: str | None = "epoch", *,
                 client: Any = None, exit_on_pause: bool = True,
                 checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.objective = objective
        self.resource = resource
        self.exit_on_pause = exit_on_pause
        self._client = hpod.trial if client is None else client
        self._checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.decision: str = "continue"
        self.paused = False
        self.stopped = False
        self.checkpoint_path: Path | None = None
        self.initial_epoch = 0
        self._epoch_saved: int | None = None
        self._validated = False  # whether Keras ran validation during the current epoch
        self._objective_seen = False
        self._first_epoch: int | None = None  # of the current fit
        limit_gpu_memory()  # the trial process's own environment, whatever the client
        # A Reporter checkpoints on "pause" and restore() resumes: the daemon may pause it.
        self._client.declare_resumable()

    def restore(self, model: Any) -> int:
        """Restore `model` from the trial's checkpoint when resumed; the epoch to start at."""
        path = self._client.resume_from()
        self.initial_epoch = _restore(model, None if path is None else _read_state(Path(path)))
        return self.initial_epoch

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._objective_seen = False
        self._first_epoch = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._validated = False

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # fit runs its validation through evaluate with the same callbacks, so this is the one
        # public sign that this epoch's logs will hold the `val_` metrics: Keras does not tell
        # callbacks its validation_freq.
        self._validated = True

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        done = epoch + 1  # Keras counts epochs from 0; the step is the number completed
        metrics: dict[str, float] = {}
        for name, value in (logs or {}).items():
            number = _scalar(value)
            if number is not None and name not in _RESERVED and name:
                metrics[name] = number
        if self.objective is not None:
            if self.objective in metrics:
                self._objective_seen = True
            elif self._validated or not self.objective.startswith("val_"):
                # These logs are all Keras will give for this epoch, so waiting cannot help:
                # the name is wrong, and failing now saves the rest of the training.
                fix = ("name one of those (Keras names a validation metric `val_` + the "
                       "metric's name in compile)" if self._validated else
                       "name one of those, or add the metric to compile(metrics=...)")
                raise ValueError(f"hpod.keras.Reporter: the objective {self.objective!r} is not "
                                 f"in Keras's logs {sorted(metrics)}: {fix}")
            # else: an epoch fit did not validate (validation_freq). Its report goes without the
            # objective: the daemon keeps the last value and cannot judge the trial on it, so
            # the answer is "continue" unless a stop or pause is already due, obeyed below.
        if self.resource:
            metrics[self.resource] = float(done)
        self.decision = str(self._client.report(done, **metrics))
        if self.decision == "stop":
            self.stopped = True
            self.model.stop_training = True
        elif self.decision == "pause":
            self.checkpoint_path = self._save(done)
            self._client.checkpoint(self.checkpoint_path)
            self.paused = True
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if (self.objective is not None and not self._objective_seen and self._first_epoch == 0
                and not (self.paused or self.stopped)):
            # Training ran from the start to its end and never validated: without validation
            # data the objective would never come, and a trial without its objective has no
            # value. A resumed fit is spared: its earlier run may have reported it, and the
            # daemon fails a trial that never did. A stop or pause may come before the first
            # validated epoch.
            raise ValueError(f"hpod.keras.Reporter: the objective {self.objective!r} never "
                             "appeared in Keras's logs: fit validated no epoch; pass "
                             "validation_data (or validation_split) to fit, with a "
                             "validation_freq that validates at least once within its epochs")
        if self.paused and self.exit_on_pause:
            logger.info("paused after epoch %s; checkpoint in %s: exiting",
                        self._epoch_saved, self.checkpoint_path)
            raise SystemExit(0)

    def _save(self, epoch: int) -> Path:
        """Model, then state: the state file is replaced last, so it always names a whole model."""
        folder = self._checkpoint_dir or Path(self._client.trial_dir()) / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = f"model-{epoch:06d}.keras"
        partial = folder / f"partial-{name}"  # Keras insists on the .keras suffix
        self.model.save(partial)
        os.replace(partial, folder / name)
        state_tmp = folder / f".{STATE_FILE}.tmp"
        state_tmp.write_text(json.dumps({"format": 1, "epoch": epoch, "model": name}))
        os.replace(state_tmp, folder / STATE_FILE)
        for old in folder.glob("model-*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self._epoch_saved = epoch
        return folder


def _scalar(value: Any) -> float | None:
    """A float for a number, numpy scalar or 0-d tensor; None for anything else."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@functools.cache
def _with_keras(cls: type[Reporter]) -> type[Reporter]:
    import keras

    if issubclass(cls, keras.callbacks.Callback):
        return cls
    return type(cls.__name__, (cls, keras.callbacks.Callback),
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__})
