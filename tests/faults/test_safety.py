"""A study file runs a command: hpod runs only what the daemon's own user (or root) could have
written. Real files, real modes and owners (the owner tests need root to chown)."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from helpers import hpod_cli, study_status, wait_until, write_study
from hpod.errors import StudySpecError
from hpod.safety import check_study_file, group_is_private, user_name
from hpod.spec import load_study_file
from robustness_support import fault_study, trials_of

NOBODY = 65534
ME = user_name(os.geteuid())
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def study_text(command: str = '["python", "-c", "pass"]') -> str:
    return f"""
command = {command}
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"""


def refusal(path: Path) -> str:
    with pytest.raises(StudySpecError) as info:
        load_study_file(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    # `hpod check` prints exactly what the daemon records.
    check = hpod_cli("check", path, check=False)
    assert check.returncode == 1 and check.stdout.strip() == f"error: {text}"
    return text


@needs_root
@pytest.mark.parametrize(("mode", "who"), [
    (0o664, "its group (nogroup)"), (0o646, "everyone"),
    (0o666, "its group (nogroup) and by everyone")])
def test_a_study_file_others_can_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    # gid 65534 is nogroup, shared by several system accounts: a group others are in.
    if grp.getgrgid(NOBODY).gr_name != "nogroup" or group_is_private(NOBODY, os.geteuid()):
        pytest.skip("needs gid 65534 to be a shared group named nogroup")
    path = tmp_path / "s.toml"
    path.write_text(study_text())
    os.chown(path, -1, NOBODY)
    path.chmod(mode)
    text = refusal(path)
    assert f"the study file is writable by {who} ({stat.filemode(stat.S_IFREG | mode)})" in text
    assert f"whoever can change it can make hpod run any command as {ME}" in text
    assert text.endswith(f"Fix: chmod go-w {path}")
    path.chmod(0o644)
    assert load_study_file(path).name == "s"


def test_world_writable_is_refused_whatever_the_group(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(study_text())
    path.chmod(0o666)
    assert "everyone (-rw-rw-rw-)" in refusal(path)


def test_group_writable_is_fine_in_a_user_private_group(tmp_path: Path) -> None:
    """umask 002 with a group of one's own (Debian, Ubuntu): nobody else can write the file."""
    path = tmp_path / "s.toml"
    path.write_text(study_text())
    if not group_is_private(os.stat(path).st_gid, os.geteuid()):
        pytest.skip("the file's group is not this user's private group here")
    path.chmod(0o664)
    assert load_study_file(path).name == "s"


@needs_root
def test_a_study_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(study_text())
    os.chown(path, NOBODY, -1)
    text = refusal(path)
    assert f"the study file is owned by {user_name(NOBODY)}, but the daemon runs as {ME}" in text
    assert f"chown {ME} {path}" in text


def test_a_symlink_to_a_trusted_file_elsewhere_is_followed(tmp_path: Path) -> None:
    """Links from a checkout into the watched folder are the common case; relative paths in
    the study resolve against the real file's folder."""
    repo, watched = tmp_path / "repo", tmp_path / "watched"
    repo.mkdir()
    watched.mkdir()
    script = repo / "train.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (repo / "exp.toml").write_text(study_text('["./train.sh"]'))
    (watched / "exp.toml").symlink_to(repo / "exp.toml")
    spec = load_study_file(watched / "exp.toml")
    assert spec.command == (str(script),)


def test_a_symlink_to_an_untrusted_file_names_the_real_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.toml"
    target.write_text(study_text())
    target.chmod(0o666)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    text = refusal(link)
    assert f"the study file it links to ({target}) is writable" in text
    assert text.endswith(f"Fix: chmod go-w {target}")


@needs_root
def test_a_symlink_made_by_another_user_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "mine.toml"
    target.write_text(study_text())
    link = tmp_path / "theirs.toml"
    link.symlink_to(target)
    os.lchown(link, NOBODY, -1)
    text = refusal(link)
    assert f"is a symbolic link owned by {user_name(NOBODY)}" in text
    assert f"ln -sfn {target} {link}" in text


def test_broken_links_and_loops_are_reported(tmp_path: Path) -> None:
    dangling = tmp_path / "dangling.toml"
    dangling.symlink_to(tmp_path / "gone.toml")
    assert "is a symbolic link to" in refusal(dangling) and "which does not exist" in \
        refusal(dangling)
    loop = tmp_path / "loop.toml"
    loop.symlink_to(tmp_path / ".other")
    (tmp_path / ".other").symlink_to(loop)
    assert "a loop of links" in refusal(loop)
    # `hpod run` of it says so too, where Python 3.11's Path.resolve raised a traceback.
    run = hpod_cli("run", loop, "--plain", check=False)
    assert run.returncode == 2 and "a loop of links" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("command, field", [('["./train.sh"]', "command[0]"),
                                            ('["sh", "train.sh"]', "command[1]"),
                                            ('["sh", "../src/train.sh"]', "command[1]")])
def test_a_program_others_can_write_is_refused(tmp_path: Path, command: str, field: str) -> None:
    studies = tmp_path / "studies"
    src = tmp_path / "src" if "../src" in command else studies
    src.mkdir(parents=True, exist_ok=True)
    studies.mkdir(exist_ok=True)
    script = src / "train.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o777)
    path = studies / "s.toml"
    path.write_text(study_text(command))
    text = refusal(path)
    assert f"field `{field}`" in text and f"{script} is writable by " in text
    assert text.endswith(f"Fix: chmod go-w {script}")
    script.chmod(0o755)
    load_study_file(path)


def test_system_programs_and_hpods_own_python_are_trusted(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(study_text('["sh", "-c", "exit 0"]'))
    load_study_file(path)  # /bin/sh is root's
    path.write_text(study_text('["python", "/etc/hostname"]'))
    load_study_file(path)  # an absolute argument is not a file of the study


def test_check_study_file_takes_the_descriptor_it_is_given(tmp_path: Path) -> None:
    """The reader judges the fstat of what it reads: here the stat of a group-writable file."""
    path = tmp_path / "s.toml"
    path.write_text("x")
    path.chmod(0o602)
    with pytest.raises(StudySpecError, match="chmod go-w"):
        check_study_file(path, os.stat(path))
    path.chmod(0o600)
    check_study_file(path, os.stat(path))


@pytest.mark.slow
def test_the_daemon_refuses_an_untrusted_file_until_it_is_fixed(tmp_path: Path,
                                                                start_daemon) -> None:
    daemon = start_daemon(tmp_path)
    wait_until(lambda: "watching" in daemon.log(), what="the daemon to start")
    # Writable by everyone before it appears: the watcher may read a file the moment it is there.
    draft = tmp_path / ".shared.toml.tmp"
    draft.write_text(fault_study("ok", trials=1))
    draft.chmod(0o666)
    path = draft.rename(tmp_path / "shared.toml")
    # Not a shell in sight: a $(...) argument reaches the trial as it is written.
    pwned = tmp_path / "pwned"
    write_study(tmp_path, "literal", fault_study("ok", trials=1).replace(
        '"ok"]', f'"ok", "$(touch {pwned})", "; touch {pwned}"]'))
    wait_until(lambda: "chmod go-w" in ((study_status(tmp_path, "shared") or {}).get("error")
                                        or ""), what="the refusal to be recorded")
    status = study_status(tmp_path, "shared")
    assert status["state"] == "invalid"
    assert status["error"].startswith(f"{path}: the study file is writable by ")
    assert status["error"].endswith(f"(-rw-rw-rw-): whoever can change it can make hpod run "
                                    f"any command as {ME} Fix: chmod go-w {path}")
    assert trials_of(tmp_path, "shared") == []

    path.chmod(0o644)  # no new save needed: the change of mode is an event of its own
    wait_until(lambda: (study_status(tmp_path, "shared") or {}).get("state") == "complete",
               what="the fixed study to run")
    wait_until(lambda: (study_status(tmp_path, "literal") or {}).get("state") == "complete",
               what="the literal study to run")
    assert not pwned.exists()
    assert daemon.terminate() == 0, daemon.log()
