"""Study files: every broken fixture gives one clear line; good ones parse alike in every format."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpod.errors import NotAStudyFile, StudySpecError
from hpod.space import FloatParam, Space
from hpod.spec import TOP_LEVEL_KEYS, StudySpec, load_study_file, parse_study
from hpod.store.records import Direction

STUDIES = Path(__file__).resolve().parents[1] / "fixtures" / "studies"
GOOD, BROKEN = STUDIES / "good", STUDIES / "broken"

# file -> (field the error names, or None for file-level errors; a fragment of the message)
BROKEN_CASES: dict[str, tuple[str | None, str]] = {
    "bad_name.toml": ("name", "invalid study name 'my study'"),
    "bad_param_name.json": ("space.my lr", "invalid parameter name 'my lr'"),
    "binary.toml": (None, "is a binary file"),
    "bool_bound.toml": ("space.lr.low", "must be a number, got boolean true"),
    "budget_missing.toml": ("budget", "is required"),
    "budget_negative_hours.toml": ("budget.hours", "must be greater than 0"),
    "budget_trials_huge.toml": ("budget.trials", "must be at most 1000000000"),
    "budget_unknown_key.toml": ("budget.trails", "Did you mean 'trials'?"),
    "choices_on_float.toml": ("space.lr.choices", "does not apply to type 'float'"),
    "choices_string.toml": ("space.act.choices", "must be a list, got string 'relu'"),
    "command_empty.toml": ("command", "must not be empty"),
    "command_not_executable.toml": ("command[0]", "is not an executable file"),
    "command_not_found.toml": ("command[0]", "'hpod-no-such-program' was not found on PATH"),
    "command_path_missing.toml": ("command[0]", "'./missing.sh' was not found"),
    "command_string.toml": ("command", 'write it as a list: command = ["python", "train.py", "--fast"]'),
    "duplicate_choices.toml": ("space.act.choices[2]", "duplicate choice 'relu'"),
    "empty.toml": (None, "is empty"),
    "empty_choices.toml": ("space.act.choices", "must not be empty"),
    "enqueue_empty_point.toml": ("enqueue[0]", "is empty"),
    "enqueue_fixed_param.toml": ("enqueue[0].epochs", "'epochs' is fixed in [space] to 30"),
    "enqueue_not_a_choice.toml": ("enqueue[0].act", "string 'gelu' is not one of"),
    "enqueue_off_grid.toml": ("enqueue[0].units", "40 is not on the step grid"),
    "enqueue_out_of_range.toml": ("enqueue[2].lr", "0.5 is outside [0.0001, 0.1]"),
    "enqueue_over_budget.toml": ("enqueue", "has 3 points but budget.trials is 2"),
    "enqueue_point_not_table.json": ("enqueue[1]", "must be a table of parameter values"),
    "enqueue_single_table.yaml": ("enqueue", "must be a list of tables, got a single table"),
    "enqueue_string_number.toml": ("enqueue[0].lr", "must be a number, got string '0.01'"),
    "enqueue_unknown_param.toml": ("enqueue[1].lrr", "Did you mean 'lr'?"),
    "env_bool.toml": ("env.DEBUG", "is true, but an environment variable is text"),
    "env_reserved.toml": ("env.HPOD_PARAMS", "is reserved"),
    "fixed_date.toml": ("space.start", "cannot be passed to a trial as JSON"),
    "gpus_bad_fraction.toml": ("resources.gpus_per_trial", "must divide 1"),
    "gpus_fractional_above_one.toml": ("resources.gpus_per_trial", "whole number"),
    "grid_without_step.toml": ("space.lr", "needs a finite space"),
    "infinite_bound.toml": ("space.lr.high", "must be a finite number"),
    "int_fractional_bound.toml": ("space.units.low", "must be an integer, got number 16.5"),
    "int_step_not_dividing.toml": ("space.units.step", "does not divide the range"),
    "json_deep.json": ("space.x[0][0][0][0][0][0][0][0][0][0][0]...", "nested too deeply"),
    "json_duplicate_key.json": (None, "duplicate key 'parallel'"),
    "json_syntax.json": (None, "JSON syntax error at line 3, column 1"),
    "latin1.yaml": (None, "is not UTF-8 text"),
    "log_nonpositive.toml": ("space.lr.low", "needs low > 0"),
    "log_with_step.toml": ("space.lr.step", "cannot be combined"),
    "low_ge_high.toml": ("space.lr.low", "must be less than high"),
    "max_failures_zero.toml": ("max_failures", "must be at least 1"),
    "missing_param_high.toml": ("space.lr.high", "is required"),
    "missing_param_type.toml": ("space.lr.type", "is missing"),
    "missing_space.toml": ("space", "is required"),
    "nan_choice.toml": ("space.x.choices[1]", "must be finite"),
    "on_failure_not_found.toml": ("on_failure[0]", "'./hooks/no-such-notify.sh' was not found"),
    "on_finish_string.toml": ("on_finish", 'write it as a list: on_finish = ["mail", "-s", "done"'),
    "objective_bad_direction.toml": ("objective.direction", "Did you mean 'maximize'?"),
    "objective_missing.toml": ("objective", "is required"),
    "objective_no_direction.toml": ("objective.direction", "is required"),
    "objective_reserved_metric.toml": ("objective.metric", "reserved"),
    "parallel_huge.json": ("parallel", "must be at most 1024"),
    "parallel_string.toml": ("parallel", "must be an integer, got string 'abc'"),
    "parallel_zero.toml": ("parallel", "must be at least 1"),
    "scheduler_bad_mode.toml": ("scheduler.mode", "unknown value 'kill'"),
    "scheduler_min_ge_max.toml": ("scheduler.min_resource", "must be less than max_resource"),
    "scheduler_no_max.toml": ("scheduler.max_resource", "is required for kind 'asha'"),
    "scheduler_reduction_one.toml": ("scheduler.reduction_factor", "must be greater than 1"),
    "scheduler_unknown_kind.toml": ("scheduler.kind", "Did you mean 'asha'?"),
    "seed_negative.toml": ("seed", "must be at least 0"),
    "space_not_table.toml": ("space", "must be a table"),
    "space_only_fixed.toml": ("space", "no searched parameter"),
    "step_not_dividing.toml": ("space.dropout.step", "step 0.2 does not divide the range"),
    "step_zero.toml": ("space.dropout.step", "must be greater than 0"),
    "string_bound.toml": ("space.lr.low", "must be a number, got string '0.001'"),
    "suggester_unknown_kind.toml": ("suggester.kind", "Did you mean 'random'?"),
    "suggester_unknown_option.toml": ("suggester.n_startup", "unknown key 'n_startup'"),
    # A value the suggester refuses is the file's error, not the daemon's crash.
    "suggester_bad_value.toml": ("suggester.acquisition",
                                 "acquisition must be one of 'logei', 'ucb', 'hedge', got 'ei'"),
    "suggester_joint_fractions.toml": ("suggester.fidelity",
                                       'use fidelity = "level" for a resource in fractions'),
    "toml_syntax.toml": (None, "TOML syntax error: Invalid value (at line 4, column 12)"),
    "trial_negative_retries.toml": ("trial.retries", "must be at least 0"),
    "trial_unknown_key.toml": ("trial.timout", "Did you mean 'timeout'?"),
    "trial_repeats_with_pause.toml": ("trial.repeats", 'scheduler mode "pause"'),
    "trial_repeats_zero.toml": ("trial.repeats", "must be at least 1"),
    "unknown_param_key.toml": ("space.lr.hgh", "Did you mean 'high'?"),
    "unknown_param_type.toml": ("space.lr.type", "Did you mean 'float'?"),
    "unknown_top_key.toml": ("paralel", "Did you mean 'parallel'?"),
    "unsupported.ini": (None, "unsupported file type '.ini'"),
    "workdir_missing.toml": ("workdir", "folder 'no-such-folder' does not exist"),
    "yaml_duplicate_key.yaml": (None, "duplicate key 'parallel'"),
    "yaml_not_table.yaml": (None, "not a study file: it holds a list, not a table of settings"),
    "yaml_syntax.yaml": (None, "YAML error at line 2, column 10"),
    "yaml_bad_tagged_collection.yaml": (None, "YAML error at line 3, column 10: expected a "
                                        "mapping node, but found sequence"),
    "yaml_bad_tagged_value.yaml": (None, "YAML error at line 3, column 10: cannot read "
                                   "'2001-13-14' as timestamp"),
}


def load_error(path: Path) -> StudySpecError:
    with pytest.raises(StudySpecError) as info:
        load_study_file(path)
    return info.value


@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_broken_file(name: str) -> None:
    field, fragment = BROKEN_CASES[name]
    error = load_error(BROKEN / name)
    text = str(error)
    assert error.field == field, text
    assert fragment in text
    assert text.startswith(str(BROKEN / name) + ": ")  # names the file
    if field is not None:
        assert f"field `{field}`" in text
    assert "\n" not in text
    assert error.fix and text.endswith(f"Fix: {error.fix}")


def test_every_broken_fixture_has_a_case() -> None:
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(BROKEN_CASES)


def test_file_level_errors(tmp_path: Path) -> None:
    assert "does not exist" in str(load_error(tmp_path / "nope.toml"))
    (tmp_path / "dir.toml").mkdir()
    assert "is a folder" in str(load_error(tmp_path / "dir.toml"))
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    assert "is larger than 1024 KiB" in str(load_error(big))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in str(load_error(deep))
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("[" * 50_000 + "]" * 50_000)
    assert "nested too deeply" in str(load_error(deep_yaml))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text("parallel = 1\n")
    path.chmod(0)
    assert "permission denied" in str(load_error(path))


def test_yaml_reads_exponents_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("command: [python]\nobjective: {metric: loss, direction: min}\n"
                    "budget: {trials: 1.5e3}\nspace:\n  lr: {type: float, low: 1e-5, high: 1E-1}\n"
                    "  tag: \"1e-5\"\n")
    spec = load_study_file(path)
    assert spec.budget.trials == 1500
    assert spec.space.params[0] == FloatParam("lr", 1e-5, 0.1)
    assert spec.space.fixed == {"tag": "1e-5"}


def test_yaml_reads_yes_no_on_off_as_words_and_true_false_as_booleans(tmp_path: Path) -> None:
    path = tmp_path / "words.yaml"
    path.write_text("command: [python]\nobjective: {metric: loss, direction: min}\n"
                    "budget: {trials: 3}\nspace:\n  answer: {type: categorical, choices: [yes, no]}\n"
                    "  switch: {type: categorical, choices: [on, off, yes]}\n"
                    "  shuffle: true\n  quoted: 'No'\n")
    spec = load_study_file(path)
    choices = {param.name: param.choices for param in spec.space.params}
    assert choices == {"answer": ("yes", "no"), "switch": ("on", "off", "yes")}
    assert spec.space.fixed == {"shuffle": True, "quoted": "No"}


def test_yaml_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("command: &a [python, *a]\n")
    assert "nested too deeply" in str(load_error(path))


# -- good files ------------------------------------------------------------------------------

def test_the_same_study_in_toml_yaml_and_json_parses_alike() -> None:
    specs = [load_study_file(GOOD / f"digits.{ext}") for ext in ("toml", "yaml", "json")]
    unpathed = [dataclasses.replace(s, path=Path("x")) for s in specs]
    assert unpathed[0] == unpathed[1] == unpathed[2]
    assert len({s.identity() for s in specs}) == 1
    spec = specs[0]
    assert spec.name == "digits"
    assert spec.command == (sys.executable, str(GOOD / "train.py"), "--epochs", "30")
    assert spec.source_command == ("python", "train.py", "--epochs", "30")
    assert spec.workdir == GOOD
    assert spec.env == {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert (spec.objective.metric, spec.objective.direction) == ("val_loss", Direction.MINIMIZE)
    assert (spec.budget.trials, spec.budget.hours) == (30, 1.5)
    assert (spec.parallel, spec.seed, spec.max_failures) == (2, 7, 5)
    assert spec.space.params[0] == FloatParam("lr", 1e-5, 1e-1, log=True)
    assert spec.space.fixed == {"epochs": 30, "layers": [64, 32]}
    assert spec.suggester.kind == "random"
    sched = spec.scheduler
    assert (sched.kind, sched.min_resource, sched.max_resource, sched.reduction_factor) == \
        ("asha", 1.0, 30.0, 3.0)
    assert (spec.trial.timeout, spec.trial.retries, spec.trial.grace) == (600.0, 1, 10.0)
    assert spec.resources.gpus_per_trial == 0.0


def test_to_dict_is_json_and_names_every_field() -> None:
    spec = load_study_file(GOOD / "digits.toml")
    data = json.loads(json.dumps(spec.to_dict()))
    assert set(data) == set(TOP_LEVEL_KEYS) | {"path"}
    assert Space.from_dict(data["space"]) == spec.space
    assert data["objective"] == {"metric": "val_loss", "direction": "minimize"}


def test_a_grid_study_needs_no_budget() -> None:
    spec = load_study_file(GOOD / "grid.toml")
    assert spec.name == "small-grid"
    assert spec.suggester.kind == "grid"
    assert (spec.budget.trials, spec.budget.hours) == (None, None)
    assert spec.space.grid_size() == 3 * 4 * 2
    assert spec.objective.direction is Direction.MAXIMIZE


def test_every_field_away_from_its_default() -> None:
    spec = load_study_file(GOOD / "everything.toml")
    assert spec.command == (sys.executable, "-u", str(GOOD / "train.py"), "--quiet")
    assert spec.env == {"DATA_DIR": "/tmp", "REPEATS": "3"}
    assert spec.objective.metric == "val/loss"
    assert (spec.budget.trials, spec.budget.hours) == (None, 12.0)
    assert (spec.parallel, spec.seed, spec.max_failures) == (4, 123, 10)
    assert spec.space.fixed == {"note": "fixed string"}
    assert spec.suggester.kind == "gp" and spec.suggester.options == {"acquisition": "ucb"}
    assert dataclasses.asdict(spec.scheduler) == {
        "kind": "async-hyperband", "resource": "epoch", "min_resource": 1.0,
        "max_resource": 81.0, "reduction_factor": 3.0, "brackets": 4, "grace": None,
        "mode": "pause", "options": {"seed": 9}}
    assert spec.resources.gpus_per_trial == 0.5
    assert dataclasses.asdict(spec.trial) == {"timeout": 3600.0, "retries": 2,
                                             "retry_delay": 1.5, "stall_timeout": 300.0,
                                             "grace": 30.0, "preload": (), "repeats": 1,
                                             "max_log_mb": 8.0, "keep_checkpoints": 3}


# -- parse_study on data ---------------------------------------------------------------------

def study(**fields) -> dict:
    base = {"command": ["python", "train.py"],
            "objective": {"metric": "loss", "direction": "min"},
            "budget": {"trials": 5},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse(tmp_path: Path, **fields) -> StudySpec:
    return parse_study(study(**fields), path=tmp_path / "s.toml")


def test_command_words_resolve_against_the_study_folder(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tmp_path / "config.yaml").write_text("a: 1\n")
    spec = parse(tmp_path, command=["bin/run.sh", "config.yaml", "--lr", "missing.txt", 3])
    assert spec.command == (str(script), str(tmp_path / "config.yaml"), "--lr", "missing.txt", "3")
    assert parse(tmp_path, command=["sh", "-c", "true"]).command[0].endswith("/sh")
    assert parse(tmp_path, command=[str(script)]).command == (str(script),)


def test_command_lookup_uses_the_study_path_variable(tmp_path: Path) -> None:
    tool = tmp_path / "tools" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    spec = parse(tmp_path, command=["mytool"], env={"PATH": str(tool.parent)})
    assert spec.command == (str(tool),)


def test_relative_workdir_and_default_name(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    spec = parse(tmp_path, workdir="runs")
    assert spec.workdir == tmp_path / "runs"
    assert spec.name == "s"


def test_bad_file_stem_asks_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse_study(study(), path=tmp_path / "my study.toml")
    assert info.value.field == "name"
    assert parse_study(study(name="ok"), path=tmp_path / "my study.toml").name == "ok"


def test_shorthands_and_nulls(tmp_path: Path) -> None:
    spec = parse(tmp_path, suggester="grid", scheduler="median", budget=None, seed=None,
                 space={"x": {"type": "int", "low": 0, "high": 3}},
                 trial={"timeout": None}, resources={"gpus_per_trial": 0.25})
    assert spec.suggester.kind == "grid" and spec.scheduler.kind == "median"
    assert spec.seed is None and spec.trial.timeout is None
    assert spec.resources.gpus_per_trial == 0.25


def test_identity_follows_command_space_and_objective_only(tmp_path: Path) -> None:
    base = parse(tmp_path).identity()
    assert parse(tmp_path, parallel=3, budget={"hours": 2}).identity() == base
    assert parse(tmp_path, command=["python", "other.py"]).identity() != base
    assert parse(tmp_path, space={"x": {"type": "float", "low": 0.0, "high": 2.0}}).identity() != base
    assert parse(tmp_path, objective={"metric": "loss", "direction": "max"}).identity() != base


def test_errors_from_data_name_the_given_path(tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, space={"x": {"type": "float", "low": 2.0, "high": 1.0}})
    assert str(info.value).startswith(f"{tmp_path / 's.toml'}: field `space.x.low`")


# -- enqueued configurations ---------------------------------------------------------------

ENQUEUE_TOML = """\
command = ["python", "train.py"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 20 }

[space]
lr = { type = "float", low = 1e-4, high = 1e-1, log = true }
dropout = { type = "float", low = 0.0, high = 0.5, step = 0.1 }
units = { type = "int", low = 16, high = 256, step = 16 }
act = { type = "categorical", choices = ["relu", "tanh"] }
epochs = 30

[[enqueue]]                 # a full point
lr = 0.001
dropout = 0.2
units = 64
act = "relu"

[[enqueue]]                 # a partial one: the suggester fills in the rest
lr = 0.01
units = 128.0
"""

ENQUEUED = ({"lr": 0.001, "dropout": 0.2, "units": 64, "act": "relu"},
            {"lr": 0.01, "units": 128})


def test_enqueued_points_parse_alike_in_toml_yaml_and_json(tmp_path: Path) -> None:
    import yaml

    toml_path = tmp_path / "enq.toml"
    toml_path.write_text(ENQUEUE_TOML)
    spec = load_study_file(toml_path)
    assert spec.enqueue == ENQUEUED
    assert type(spec.enqueue[1]["units"]) is int  # normalised: 128.0 is the int 128
    data = {"command": ["python", "train.py"], "objective": {"metric": "loss", "direction": "min"},
            "budget": {"trials": 20}, "space": spec.space.to_dict(),
            "enqueue": [dict(p) for p in reversed(ENQUEUED)]}
    (tmp_path / "enq.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "enq.json").write_text(json.dumps(data))
    for ext in ("yaml", "json"):
        assert load_study_file(tmp_path / f"enq.{ext}").enqueue == tuple(reversed(ENQUEUED))


def test_enqueued_points_are_in_to_dict_but_not_in_the_identity(tmp_path: Path) -> None:
    path = tmp_path / "enq.toml"
    path.write_text(ENQUEUE_TOML)
    spec = load_study_file(path)
    assert json.loads(json.dumps(spec.to_dict()))["enqueue"] == [dict(p) for p in ENQUEUED]
    path.write_text(ENQUEUE_TOML.split("[[enqueue]]")[0])
    plain = load_study_file(path)
    assert plain.enqueue == () and plain.to_dict()["enqueue"] == []
    assert plain.identity() == spec.identity()  # adding points under a running study is fine


def test_enqueue_null_means_none(tmp_path: Path) -> None:
    assert parse(tmp_path, enqueue=None).enqueue == ()
    assert parse(tmp_path, enqueue=[]).enqueue == ()


def test_enqueue_errors_from_data(tmp_path: Path) -> None:
    def field_of(**fields) -> str | None:
        with pytest.raises(StudySpecError) as info:
            parse(tmp_path, **fields)
        assert "\n" not in str(info.value) and info.value.fix
        return info.value.field

    assert field_of(enqueue="x=0.5") == "enqueue"
    assert field_of(enqueue=[{"x": 0.5}, {"x": True}]) == "enqueue[1].x"
    assert field_of(enqueue=[{"x": 10**400}]) == "enqueue[0].x"
    assert field_of(enqueue=[{"x": float("nan")}]) == "enqueue[0].x"
    assert field_of(enqueue=[{"x": [0.5]}]) == "enqueue[0].x"
    assert field_of(enqueue=[{"x": 0.1}] * 6) == "enqueue"  # budget.trials is 5
    assert field_of(enqueue=[{1: 0.1}]) == "enqueue[0]"
    cat = {"c": {"type": "categorical", "choices": ["a", None]}}
    assert field_of(space=cat, enqueue=[{"c": ["a"]}]) == "enqueue[0].c"
    assert parse(tmp_path, space=cat, enqueue=[{"c": None}]).enqueue == ({"c": None},)
    # a grid study has no budget: any number of points may be enqueued
    grid = parse(tmp_path, suggester="grid", budget=None, space={"x": {"type": "int", "low": 0,
                                                                      "high": 3}},
                 enqueue=[{"x": 1}] * 10)
    assert len(grid.enqueue) == 10


# -- properties ------------------------------------------------------------------------------

def test_hooks_resolve_like_command_and_stay_out_of_the_identity(tmp_path: Path) -> None:
    hook = tmp_path / "hooks" / "notify.sh"
    hook.parent.mkdir()
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    (tmp_path / "message.txt").write_text("done\n")
    spec = parse(tmp_path, on_finish=["hooks/notify.sh", "message.txt", "--to", "me"],
                 on_failure=["sh", "-c", "exit 1"])
    assert spec.on_finish == (str(hook), str(tmp_path / "message.txt"), "--to", "me")
    assert spec.on_failure[0].endswith("/sh") and spec.on_failure[1:] == ("-c", "exit 1")
    assert spec.to_dict()["on_finish"] == list(spec.on_finish)
    assert spec.identity() == parse(tmp_path).identity()
    plain = parse(tmp_path, on_finish=None)
    assert (plain.on_finish, plain.on_failure) == (None, None)
    assert (plain.to_dict()["on_finish"], plain.to_dict()["on_failure"]) == (None, None)


def test_hook_errors_name_the_hook(tmp_path: Path) -> None:
    cases = [(dict(on_finish=[]), "on_finish", "must not be empty"),
             (dict(on_failure=["hpod-no-such-hook"]), "on_failure[0]", "was not found on PATH"),
             (dict(on_finish=["true", {"a": 1}]), "on_finish[1]", "must be a string"),
             (dict(on_finish=3), "on_finish", "must be a list of arguments, got integer 3")]
    for fields, field, fragment in cases:
        with pytest.raises(StudySpecError) as info:
            parse(tmp_path, **fields)
        assert info.value.field == field and fragment in str(info.value), str(info.value)


def test_a_hook_others_may_write_is_refused(tmp_path: Path) -> None:
    hook = tmp_path / "notify.sh"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o777)
    (tmp_path / "s.json").write_text(json.dumps(study(on_finish=["./notify.sh"])))
    (tmp_path / "s.json").chmod(0o600)
    error = load_error(tmp_path / "s.json")
    assert error.field == "on_finish[0]", str(error)


WORDS = [*TOP_LEVEL_KEYS, "type", "low", "high", "log", "step", "choices", "kind", "metric",
         "direction", "trials", "hours", "float", "int", "categorical", "python", "x"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(WORDS))
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)
FIELDS = ["name", "command", "workdir", "env", "objective", "budget", "parallel", "seed", "space",
          "suggester", "scheduler", "resources", "trial", "max_failures", "enqueue", "on_finish",
          "on_failure"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), JSONISH, max_size=8))
def test_arbitrary_data_only_ever_raises_study_spec_error(tmp_path: Path, data: dict) -> None:
    try:
        parse_study(data, path=tmp_path / "h.toml")
    except StudySpecError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=JSONISH, inner=st.sampled_from(["", "x", "objective"]))
def test_one_arbitrary_field_in_a_valid_study(tmp_path: Path, field: str, value, inner: str) -> None:
    data = study(scheduler={"kind": "asha", "max_resource": 9}, trial={"retries": 1})
    if inner == "x" and field == "space":
        data["space"] = {"x": value}
    elif inner == "x" and field == "enqueue":
        data["enqueue"] = [{"x": value}] if not isinstance(value, list) else value
    elif inner == "objective" and isinstance(value, dict):
        data[field] = {**(data.get(field) or {}), **value} if isinstance(data.get(field), dict) else value
    else:
        data[field] = value
    try:
        parse_study(data, path=tmp_path / "h.toml")
    except StudySpecError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize(("scheduler", "field", "fragment"), [
    ({"kind": "asha", "max_resource": 0.5}, "scheduler.max_resource", "greater than"),
    ({"kind": "sh", "max_resource": 27, "options": {"cohort_size": 0}},
     "scheduler.options.cohort_size", "> 0"),
    ({"kind": "median", "options": {"min_trial": 3}}, "scheduler.options.min_trial",
     "Did you mean `min_trials`"),
    ({"kind": "async-hyperband", "max_resource": 27, "brackets": 50}, "scheduler.brackets",
     "at most 4"),
])
def test_a_scheduler_the_daemon_could_not_build_is_an_error_of_the_file(
        tmp_path: Path, scheduler: dict, field: str, fragment: str) -> None:
    """These passed `hpod check` and then failed the study as "a bug in hpod"; an option the
    kind does not take (`min_trial`) was ignored without a word."""
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler=scheduler)
    assert info.value.field == field and fragment in str(info.value), str(info.value)
    assert "Fix: " in str(info.value)


@pytest.mark.parametrize(("options", "field"), [
    ({"deterministic": "false"}, "suggester.deterministic"),
    ({"warp": "log"}, "suggester.warp"),
])
def test_gp_options_of_the_wrong_kind_are_refused(tmp_path: Path, options: dict,
                                                  field: str) -> None:
    """A quoted "false" used to pass, and pinned the noise: the opposite of what it says."""
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, suggester={"kind": "gp", **options})
    assert info.value.field == field


@pytest.mark.parametrize(("scheduler", "field", "fix"), [
    ({"kind": "asha", "max_resource": 9, "brackets": 2}, "scheduler.brackets",
     '"async-hyperband"'),
    ({"kind": "median", "min_resource": 2}, "scheduler.min_resource", '"asha"'),
    ({"kind": "median", "reduction_factor": 2}, "scheduler.reduction_factor", '"sh"'),
    ({"kind": "asha", "max_resource": 9, "grace": 3}, "scheduler.grace", '"median"'),
    ({"kind": "hyperband", "max_resource": 9, "mode": "stop"}, "scheduler.mode", '"asha"'),
])
def test_a_field_the_scheduler_kind_would_ignore_is_an_error_naming_the_kinds_that_use_it(
        tmp_path: Path, scheduler: dict, field: str, fix: str) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler=scheduler)
    assert info.value.field == field and fix in str(info.value)


@pytest.mark.parametrize(("options", "field", "fix"), [
    ({"direction": "maximize"}, "scheduler.options.direction", "[objective] direction"),
    ({"mode": "pause"}, "scheduler.options.mode", 'mode = "pause"'),
    ({"max_resource": 27}, "scheduler.options.max_resource", "max_resource = 27"),
    ({"cohort_size": 9}, "scheduler.options.cohort_size", "this kind has no options"),
])
def test_options_cannot_override_the_objective_or_a_scheduler_field(
        tmp_path: Path, options: dict, field: str, fix: str) -> None:
    # A minimising study whose scheduler was told "maximize" kept its worst trials.
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler={"kind": "asha", "max_resource": 9, "options": options})
    assert info.value.field == field and fix in str(info.value)


def test_a_fraction_of_a_gpu_written_with_six_digits_is_the_fraction(tmp_path: Path) -> None:
    # 0.333333 was refused with the fix "use 1/3 = 0.333333", the same value.
    assert parse(tmp_path, resources={"gpus_per_trial": 0.333333}).resources.gpus_per_trial \
        == pytest.approx(1 / 3, abs=1e-12)
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, resources={"gpus_per_trial": 0.3})
    assert "use 1/3 = 0.333333 or 1/4 = 0.250000" in str(info.value)
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, resources={"gpus_per_trial": 0.6})
    assert "use 1 (a whole GPU) or 1/2 = 0.500000" in str(info.value)


def test_fixed_values_too_large_for_the_environment_are_an_error(tmp_path: Path) -> None:
    # Every trial failed to start with "Argument list too long" (E2BIG on HPOD_PARAMS).
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "blob": "a" * 200_000}
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, space=space)
    assert info.value.field == "space" and "128 KiB" in str(info.value)


def test_step_as_the_scheduler_resource_says_to_remove_it(tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler={"kind": "asha", "max_resource": 9, "resource": "step"})
    assert info.value.field == "scheduler.resource" and "remove `resource`" in str(info.value)


def test_fifo_keeping_a_pause_mode_neither_needs_grace_nor_refuses_repeats(
        tmp_path: Path) -> None:
    # fifo never pauses: a mode = "pause" kept from when the study used asha changes nothing.
    spec = parse(tmp_path, scheduler={"kind": "fifo", "mode": "pause"},
                 trial={"grace": 0, "repeats": 3})
    assert spec.trial.repeats == 3


def test_no_grace_with_a_pausing_scheduler_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler={"kind": "asha", "max_resource": 9, "mode": "pause"},
              trial={"grace": 0})
    assert info.value.field == "trial.grace" and "checkpoint" in str(info.value)
    parse(tmp_path, scheduler={"kind": "asha", "max_resource": 9}, trial={"grace": 0})


def test_cpus_per_trial_with_a_local_executor_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, executor={"kind": "local", "cpus_per_trial": 2})
    assert info.value.field == "executor.cpus_per_trial" and "only for Ray" in str(info.value)


def test_the_normalised_study_keeps_every_resources_field(tmp_path: Path) -> None:
    spec = parse(tmp_path, resources={"gpus_per_trial": 0.5, "min_free_memory": "4GiB",
                                      "gpu_memory_limit": "6GiB"})
    assert spec.to_dict()["resources"] == {"gpus_per_trial": 0.5, "min_free_memory_mb": 4096,
                                           "gpu_memory_limit_mb": 6144}


def test_fifo_keeps_the_other_kinds_fields_so_a_study_can_switch_early_stopping_off(
        tmp_path: Path) -> None:
    spec = parse(tmp_path, scheduler={"kind": "fifo", "max_resource": 9, "brackets": 2})
    assert spec.scheduler.kind == "fifo"


def test_a_kind_option_written_as_a_scheduler_field_says_to_put_it_in_options(
        tmp_path: Path) -> None:
    with pytest.raises(StudySpecError) as info:
        parse(tmp_path, scheduler={"kind": "sh", "max_resource": 27, "cohort_size": 9})
    assert info.value.field == "scheduler.cohort_size"
    assert "options = { cohort_size = 9 }" in str(info.value)


@pytest.mark.parametrize("data,study", [
    ({"loss": 0.1, "seed": 3, "trial": 4, "name": "run", "epochs": 5}, False),  # a trial's output
    ({"project": {"name": "mine"}, "tool": {}}, False),  # a pyproject.toml
    ([0.5, 0.25], False),
    ({"comand": ["python"], "budget": {"trials": 3}}, True),  # misspelt, still a study
    ({"spaces": {}}, True),
    ({"study": {"command": ["python"]}}, True),  # a study inside a wrapper table
    ({"budget": {"trials": 3}}, True),
])
def test_a_file_is_taken_for_a_study_by_the_keys_only_a_study_has(tmp_path, data, study) -> None:
    from hpod.errors import NotAStudyFile

    path = tmp_path / "file.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StudySpecError) as info:
        load_study_file(path)
    assert isinstance(info.value, NotAStudyFile) is not study, str(info.value)


def test_parse_study_says_data_that_is_no_table_holds_no_study(tmp_path: Path) -> None:
    # Public: a caller's list or scalar is a StudySpecError like a file's, never AttributeError.
    with pytest.raises(NotAStudyFile, match="it holds a list, not a table of settings"):
        parse_study([1, 2], path=tmp_path / "s.toml")  # type: ignore[arg-type]
