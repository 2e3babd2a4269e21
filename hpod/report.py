"""What the read-side commands print: `status`, `best`, `trials`, `events`.

Pure functions from store records to JSON-able dicts and text; the CLI does the I/O.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import time
from collections.abc import Sequence
from typing import Any, cast

from hpod.config import trial_dir, trials_dir_of
from hpod.gpus import format_memory
from hpod.reasons import reason_in_one_line
from hpod.store.reader import StoreReader
from hpod.repeats import config_results, run_seed
from hpod.store.records import EventRecord, GpuSample, StudyRecord, TrialRecord, TrialState

STATUS_COUNT_KEYS = ("queued", "running", "complete", "stopped", "failed", "paused", "interrupted")


def json_number(value: float | None) -> float | str | None:
    """JSON has no NaN/inf: say them as strings rather than emit invalid JSON."""
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return value


def best_dict(trial: TrialRecord | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"value": json_number(trial.value), "params": trial.params, "trial": trial.number}


def best_of_study(reader: StoreReader, study: StudyRecord) -> dict[str, Any] | None:
    """The best trial; with `[trial] repeats`, the best configuration by the mean of its runs."""
    if study.spec is None:
        return None
    if (study.spec.get("trial") or {}).get("repeats", 1) <= 1:
        return best_dict(reader.best_trial(study.id, study.direction))
    done = [c for c in config_results(reader.list_trials(study.id))
            if c.state is TrialState.COMPLETE and c.mean is not None]
    if not done:
        return None
    pick = min if study.direction.value == "minimize" else max
    best = pick(done, key=lambda c: cast(float, c.mean))  # no None left in `done`
    return {"value": best.mean, "params": best.params, "trial": best.number,
            "runs": best.runs, "values": list(best.values), "std": best.std}


def where_best_ran(reader: StoreReader, study: StudyRecord,
                   best: dict[str, Any]) -> dict[str, Any]:
    """`hpod best`'s answer to the morning's next questions: where the best trial's files are
    (its folder, its last checkpoint) and the shell line that runs it again by hand, outside
    hpod (hpod.trial then reads its params from HPOD_PARAMS and reports nowhere). With
    `[trial] repeats`, the best configuration's best complete run. The environment is the
    study's as it is now (a live edit may have changed it since)."""
    spec = study.spec or {}
    trial = reader.get_trial_by_number(study.id, best["trial"])
    repeated = "runs" in best  # the best configuration: its best complete run
    if repeated:
        runs = [t for t in reader.list_trials(study.id, [TrialState.COMPLETE])
                if t.config_number == best["trial"] and t.value is not None]
        pick = min if study.direction.value == "minimize" else max
        trial = pick(runs, key=lambda t: cast(float, t.value), default=trial)
    env = {**(spec.get("env") or {}), "HPOD_PARAMS": json.dumps(trial.params),
           "HPOD_SEED": str(run_seed(spec.get("seed"), trial.config_number, trial.repeat))}
    if repeated:
        env["HPOD_REPEAT"] = str(trial.repeat)
    command = [str(word) for word in spec.get("command") or ()]
    workdir = spec.get("workdir")
    line = " ".join([*(f"{name}={shlex.quote(str(value))}" for name, value in env.items()),
                     shlex.join(command)])
    return {
        "folder": str(trial_dir(trials_dir_of(reader.path), study.name, trial.number)),
        "checkpoint": trial.checkpoint,
        "rerun": f"cd {shlex.quote(str(workdir))} && {line}" if workdir else line,
    }


def format_where(doc: dict[str, Any]) -> str:
    lines = [f"files: {doc['folder']}"]
    if doc["checkpoint"]:
        lines.append(f"checkpoint: {doc['checkpoint']}")
    lines.append(f"run it again by hand:\n  {doc['rerun']}")
    return "\n".join(lines)


def study_status(reader: StoreReader, study: StudyRecord) -> dict[str, Any]:
    counts = reader.count_trials(study.id)
    spec = study.spec or {}
    return {
        "name": study.name,
        "state": study.state.value,
        "path": study.path,
        "trials": {key: getattr(counts, key) for key in STATUS_COUNT_KEYS},
        "budget": spec.get("budget"),
        # Runs per configuration ([trial] repeats): the budget counts configurations.
        "repeats": (spec.get("trial") or {}).get("repeats", 1),
        "objective": {"metric": study.metric, "direction": study.direction.value}
        if study.spec is not None
        else None,
        "best": best_of_study(reader, study),
        "error": study.error,
        "elapsed_s": round((study.finished_at or time.time()) - study.created_at, 1),
    }


def status(reader: StoreReader, daemon_pid: int | None = None) -> dict[str, Any]:
    """Every study's progress, the GPUs' latest samples, and the daemon serving the database
    (`daemon_pid`, hpod.lock.serving_pid; None: no daemon)."""
    with reader.snapshot():
        studies = [study_status(reader, s) for s in reader.list_studies()]
        gpus = reader.latest_gpu_samples()
    return {"daemon": None if daemon_pid is None else {"pid": daemon_pid},
            "studies": studies, "gpus": gpu_status(gpus, time.time())}


def gpu_status(samples: Sequence[GpuSample], now: float) -> list[dict[str, Any]]:
    """The newest sample of each GPU (NVML only; [] without): utilisation %, memory in MiB."""
    return [{"gpu": s.gpu, "utilization": s.utilization, "memory_used_mb": s.memory_used_mb,
             "memory_total_mb": s.memory_total_mb, "time": s.time,
             "age_s": round(max(0.0, now - s.time), 1)} for s in samples]


def format_status(doc: dict[str, Any]) -> str:
    studies = doc["studies"]
    if not studies:
        return "no studies yet: drop a study file into the watched folder"
    rows = [("STUDY", "STATE", "DONE/BUDGET", "RUN", "FAIL", "STOP", "BEST", "TRIAL")]
    errors = []
    for study in studies:
        trials = study["trials"]
        best = study["best"]
        rows.append(
            (
                study["name"],
                study["state"],
                _progress(study),
                str(trials["running"]),
                str(trials["failed"]),
                str(trials["stopped"]),
                _short(best["value"]) if best else "-",
                f"#{best['trial']}" if best else "-",
            )
        )
        if study["error"]:
            errors.append(f"{study['name']}: {study['error']}")
    text = _table(rows)
    if errors:
        text += "\n\nerrors:\n" + "\n".join(f"  {line}" for line in errors)
    unfinished = any(study["state"] in ("running", "paused") for study in studies)
    if doc["daemon"] is None and unfinished:
        # After a crash or a reboot the store still says "running": say that nothing is.
        text = ("no daemon is serving this database: the studies are where the last one left "
                "them, and trials shown running were cut off (they run again when a daemon "
                "starts: hpod serve FOLDER)\n\n" + text)
    return text + _format_gpus(doc.get("gpus") or [])


def _format_gpus(gpus: Sequence[dict[str, Any]]) -> str:
    if not gpus:
        return ""
    rows = [("GPU", "UTIL", "MEMORY USED", "SAMPLED")]
    for gpu in gpus:
        util = gpu["utilization"]
        used, total = gpu["memory_used_mb"], gpu["memory_total_mb"]
        rows.append((f"gpu:{gpu['gpu']}", "?" if util is None else f"{util:.0f}%",
                     f"{_mib(used)} of {_mib(total)}", f"{_ago(gpu['age_s'])} ago"))
    return "\n\n" + _table(rows)


def _mib(mb: float | None) -> str:
    return format_memory(None if mb is None else round(mb))


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"


def format_best(name: str, doc: dict[str, Any]) -> str:
    params = "\n".join(f"  {key} = {value!r}" for key, value in doc["params"].items())
    if "runs" not in doc:
        return f"study {name}: best value {_short(doc['value'])} (trial #{doc['trial']})\n{params}"
    spread = f" ± {_short(doc['std'])}" if doc["std"] is not None else ""
    runs = ", ".join(_short(v) for v in doc["values"])
    return (f"study {name}: best value {_short(doc['value'])}{spread} (mean of {len(doc['values'])} "
            f"of {doc['runs']} runs: {runs}; configuration #{doc['trial']})\n{params}")


def trial_rows(trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    rows = []
    for trial in trials:
        # Running: so far. Ended: start to end. Interrupted or paused (no end): unknown, not a
        # figure that grows with the clock.
        end = trial.finished_at
        if end is None and trial.state is TrialState.RUNNING:
            end = time.time()
        duration = None
        if trial.started_at is not None and end is not None:
            duration = round(end - trial.started_at, 3)
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.value,
                "value": json_number(trial.value),
                "last_step": trial.last_step,
                "duration_s": duration,
                "attempt": trial.attempt,
                "config": trial.config_number,  # the same for the runs of one configuration
                "repeat": trial.repeat,
                "placement": trial.placement,
                "peak_gpu_memory_mb": trial.peak_gpu_memory_mb,  # None: no GPU memory seen
                "params": trial.params,
                "reason": trial.reason,
            }
        )
    return rows


# Every column `hpod trials` can show besides the parameters, whether or not this study shows
# it: a parameter's header then never depends on which optional columns appear.
_TRIAL_COLUMNS = frozenset({"trial", "config", "repeat", "state", "value", "last_step",
                            "duration_s", "placement", "peak_gpu_mb", "reason"})
_PARAM_PREFIX = "param."


def param_header(name: str) -> str:
    """The CSV/table header of parameter `name`: `param.<name>` when `name` is one of
    `hpod trials`' own columns (trial, config, repeat, state, value, last_step, duration_s,
    placement, peak_gpu_mb, reason) or itself starts with `param.`; else `name` as it is.

    The rule looks at the name alone, so a header is the same in every study and every run,
    and every header is unique: unprefixed ones are neither columns nor start with `param.`,
    and prefixed ones differ after the prefix. To read a header back, strip one `param.`
    (params `value` and `param.value` are the columns `param.value` and `param.param.value`).
    """
    if name in _TRIAL_COLUMNS or name.startswith(_PARAM_PREFIX):
        return _PARAM_PREFIX + name
    return name


def format_trials(rows: list[dict[str, Any]], fmt: str) -> str:
    """The trials as `json`, `csv` or an aligned `table`; parameters' headers: param_header."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    param_names = sorted({name for row in rows for name in row["params"]})
    # Only studies whose trials held GPU memory get the column: CPU studies read as before.
    gpu = any(row.get("peak_gpu_memory_mb") is not None for row in rows)
    # Where each trial ran, once that says more than "a CPU slot": a GPU, a Ray node.
    where = any(not (row.get("placement") or "cpu:").startswith("cpu:") for row in rows)
    # With [trial] repeats, which configuration each run belongs to, and which run it is.
    repeats = any(row.get("repeat") for row in rows)
    fixed = ["trial", *(["config", "repeat"] if repeats else []), "state", "value",
             "last_step", "duration_s", *(["placement"] if where else []),
             *(["peak_gpu_mb"] if gpu else []), "reason"]
    # A parameter named like a column (`value`, `state`) gets a prefix: a CSV reader keyed by
    # header would otherwise read the parameter where it wants the objective.
    head = [*fixed[:-1], *(param_header(name) for name in param_names), "reason"]
    records = [
        [
            row["trial"],
            *([row["config"], row["repeat"]] if repeats else []),
            row["state"],
            row["value"],
            row["last_step"],
            row["duration_s"],
            *([row.get("placement") or ""] if where else []),
            *([_peak(row.get("peak_gpu_memory_mb"))] if gpu else []),
            *(row["params"].get(name) for name in param_names),
            reason_in_one_line(row["reason"]) if row["reason"] else "",
        ]
        for row in rows
    ]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(records)
        return out.getvalue().rstrip("\n")
    table = [tuple(_printable(h) for h in head)] + [tuple(_cell(v) for v in rec)
                                                     for rec in records]
    return _table(table)


def format_events(events: Sequence[EventRecord], names: dict[int, str]) -> str:
    lines = []
    for event in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        where = names.get(event.study_id, "") if event.study_id is not None else "daemon"
        lines.append(f"{when}  {event.level.value:<7}  {where:<16}  {event.message}")
    return "\n".join(lines) if lines else "no events"


def _peak(mb: float | None) -> int | None:
    return None if mb is None else round(mb)


def _progress(study: dict[str, Any]) -> str:
    """DONE/BUDGET: runs done over the runs the budget allows (`6/20`), and for a time budget
    the hours spent over the hours allowed (`6 · 1.2/8 h`, `6/20 · 1.2/8 h`)."""
    trials = study["trials"]
    done = trials["complete"] + trials["stopped"] + trials["failed"]
    budget = study.get("budget") or {}
    text = str(done)
    if budget.get("trials") is not None:
        text += f"/{budget['trials'] * study.get('repeats', 1)}"  # DONE counts runs
    if budget.get("hours") is not None:
        text += f" · {study.get('elapsed_s', 0.0) / 3600:.1f}/{budget['hours']:g} h"
    elif budget.get("trials") is None:
        text += "/-"
    return text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"  # an empty cell would shift the columns of anyone who splits a row
    if isinstance(value, float):
        return f"{value:.6g}"
    text = _printable(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _printable(text: str) -> str:
    """`text` with newlines, tabs and other unprintable characters written as Python escapes
    (`\\n`, `\\t`, `\\x1b`): one would break the table's row, or its alignment. Only for the
    table, which is read by eye; CSV quotes such a cell and JSON escapes it, exactly."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    )
