"""Hostile study files: every one gets one readable line recorded (what `hpod status --json`
shows), and neither the daemon nor the other studies notice.

The static corpus is tests/fixtures/studies/hostile/; what cannot live in git (a FIFO, a folder,
links, a 100 MB file, an unreadable file, a file renamed while it is written, files others may
write) is made by the test in the watched folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import hpod_cli, quadratic_study, status_json, study_status, wait_until, write_study
from hpod.errors import StudySpecError
from hpod.spec import load_study_file
from robustness_support import HOSTILE

# file -> a fragment of the error recorded for it
CORPUS: dict[str, str] = {
    "binary_junk.toml": "is a binary file (NUL byte at offset",
    "binary_png.json": "is a binary file (NUL byte at offset",
    "bom_only.json": "not a study file: it is empty",
    "command_shell_string.toml": "must be a list of arguments, not a string (hpod never uses a "
                                 "shell)",
    "comment_only.toml": "not a study file: none of the keys a study has",
    "deep_json.json": "is nested too deeply (more than 64 levels)",
    "deep_toml_arrays.toml": "is nested too deeply (more than 64 levels)",
    "deep_toml_tables.toml": "is nested too deeply (more than 64 levels)",
    "deep_yaml.yaml": "is nested too deeply (more than 64 levels)",
    "empty.yaml": "not a study file: it is empty",
    "huge_choices.json": "is too large (more than 100000 values)",
    "huge_digits.json": "holds an integer with more than 4300 digits",
    "huge_float_bound.toml": "field `space.x.high`: must be a finite number, got number inf",
    "huge_hex.yaml": "field `budget.trials`: holds an integer of 12000 bits",
    "huge_parallel.toml": "field `parallel`: must be at most 1024",
    "huge_string_name.toml": "field `name`: is too long (50000 characters, at most 100)",
    "json_nan_parallel.json": "field `parallel`: must be an integer, got number nan",
    "json_top_level_string.json": "not a study file: it holds string 'just a string', not a table",
    "json_trailing_comma.json": "JSON syntax error at line 1, column 39",
    "latin1_no_nul.yaml": "is not UTF-8 text (invalid byte at offset 27)",
    "long_unknown_key.toml": "unknown key 'kkkkkkkkkk",
    "long_line.toml": "not a study file: none of the keys a study has",
    "name_control_chars.toml": r"invalid study name 'bell\x07and\nnewline'",
    "name_nul.toml": "field `name`: contains a NUL character",
    "name_slash.json": "invalid study name 'a/b'",
    "name_traversal.toml": "invalid study name '../../etc/cron.d/evil'",
    "toml_duplicate_table.toml": "TOML syntax error: Cannot declare ('space',) twice",
    "toml_unclosed_table.toml": "TOML syntax error: Expected ']' at the end of a table",
    "toml_unterminated_string.toml": "TOML syntax error: Illegal character",
    "utf16.toml": "is a binary file (NUL byte at offset",
    "whitespace_only.toml": "not a study file: it is empty",
    "wrong_type_budget.toml": "field `budget`: must be a table, got string 'lots'",
    "wrong_type_command.toml": "field `command`: must be a list of arguments, got integer 42",
    "wrong_type_low.toml": "field `space.x.low`: must be a number, got a list",
    "wrong_type_space.toml": "field `space`: must be a table, got a list",
    "yaml_bad_date.yaml": "YAML error at line 2, column 7: cannot read '2024-02-31' as timestamp "
                          "(day is out of range for month)",
    "yaml_billion_laughs.yaml": "is too large (more than 100000 values)",
    "yaml_huge_tagged_int.yaml": "holds an integer with more than 4300 digits",
    "yaml_long_bad_float.yaml": "YAML error at line 2, column 7: cannot read 'zzzzzzzzzz",
    "yaml_key_not_string.yaml": "has a key that is not a string: integer 1",
    "yaml_null.yaml": "not a study file: it holds null, not a table of settings",
    "yaml_python_tag.yaml": "could not determine a constructor for the tag",
    "yaml_tab_indent.yaml": "found character '\\t' that cannot start any token",
    "yaml_two_documents.yaml": "but found another document",
}


def test_every_hostile_file_has_a_case() -> None:
    assert sorted(p.name for p in HOSTILE.iterdir()) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_hostile_file_gives_one_readable_line(name: str) -> None:
    with pytest.raises(StudySpecError) as info:
        load_study_file(HOSTILE / name)
    text = str(info.value)
    assert text.startswith(f"{HOSTILE / name}: ") and CORPUS[name] in text
    assert "\n" not in text and text.isprintable() and " Fix: " in text
    assert len(text) < 1000


def _with_mode(path: Path, text: str, mode: int) -> Path:
    """`path` written with `mode`, under a hidden name first (no study file), then renamed."""
    draft = path.with_name(f".{path.name}.tmp")
    draft.write_text(text)
    draft.chmod(mode)
    return draft.rename(path)


def _made_in(folder: Path) -> dict[str, str]:
    """The hostile entries git cannot hold, made in `folder`; study name -> error fragment."""
    made = {}
    os.mkfifo(folder / "fifo.toml")
    made["fifo"] = "is not a regular file (it is a FIFO)"
    (folder / "folder.toml").mkdir()
    made["folder"] = "is a folder, not a study file"
    # The hidden half first: a change to it is no event for loop.toml, which must be a loop from
    # the moment it appears (the watcher may read it at once).
    (folder / ".loop-back").symlink_to(folder / "loop.toml")
    (folder / "loop.toml").symlink_to(folder / ".loop-back")
    made["loop"] = "is a symbolic link that cannot be followed (a loop of links)"
    (folder / "dangling.yaml").symlink_to(folder / "nowhere.yaml")
    made["dangling"] = "which does not exist"
    with open(folder / "huge.toml", "wb") as huge:
        huge.truncate(100 * 1024 * 1024)  # sparse: 100 MB of NUL bytes
    made["huge"] = "is larger than 1024 KiB"
    # Modes set before the files appear: read in between, either would be a valid study that
    # starts, and then keeps running with that definition.
    shared = _with_mode(folder / "shared.toml", quadratic_study(trials=1), 0o666)
    made["shared"] = f"Fix: chmod go-w {shared}"
    if os.geteuid() != 0:  # root reads any file
        _with_mode(folder / "unreadable.toml", quadratic_study(trials=1), 0)
        made["unreadable"] = "cannot be read: permission denied"
    # Renamed while it is being written: the half that arrives first is broken on its own,
    # and the whole file (under its new name) misses `space` on purpose.
    with open(folder / "partial.toml", "w") as partial:
        partial.write('command = ["python", "-c", "pass"]\nobjective = { metric = "lo')
        partial.flush()
        os.rename(folder / "partial.toml", folder / "renamed.toml")
        partial.write('ss", direction = "minimize" }\nbudget = { trials = 2 }\n')
    made["renamed"] = "field `space`: is required but missing"
    return made


@pytest.mark.slow
def test_the_corpus_dropped_into_a_running_daemon(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "steady", quadratic_study(trials=6, parallel=1,
                                                    extra_space="steps = 20\nsleep = 0.02"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "steady") or {}).get("trials", {})
               .get("running") == 1, what="the good study to run")

    # Files with no study in them are left alone (an event each), not recorded as invalid.
    not_studies = {name for name, fragment in CORPUS.items()
                   if fragment.startswith("not a study file")}
    expected = {Path(name).stem: fragment for name, fragment in CORPUS.items()
                if name not in not_studies}
    for name in CORPUS:
        shutil.copy(HOSTILE / name, tmp_path / name)
    expected.update(_made_in(tmp_path))
    write_study(tmp_path, "late", quadratic_study(trials=2))  # a good file after the bad ones

    def recorded() -> dict[str, dict]:
        return {s["name"]: s for s in status_json(tmp_path)["studies"]}

    def all_recorded() -> bool:
        studies = recorded()
        return all(expected[name] in (studies.get(name, {}).get("error") or "")
                   for name in expected)

    wait_until(all_recorded, timeout=120, what="every hostile file's error")
    studies = recorded()
    for name, fragment in expected.items():
        study = studies[name]
        assert study["state"] == "invalid", study
        assert "\n" not in study["error"] and study["error"].isprintable(), study["error"]
        assert fragment in study["error"]
    # The half-written file under its first name is gone, and so is its study's error.
    assert studies.get("partial", {}).get("error") is None
    assert not any(Path(name).stem in studies for name in not_studies)
    events = hpod_cli("events", tmp_path, "--limit", "500").stdout
    for name in not_studies:
        assert f"{name} is ignored: not a study file" in events, events

    wait_until(lambda: study_status(tmp_path, "late")["state"] == "complete",
               what="the study dropped after the corpus")
    wait_until(lambda: study_status(tmp_path, "steady")["state"] == "complete",
               what="the study that ran throughout")
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log(), daemon.log()
    assert "fifo.toml" in hpod_cli("events", tmp_path, "--limit", "500").stdout
    assert daemon.terminate() == 0, daemon.log()
