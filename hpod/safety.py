"""Whose files the daemon may act on: a study file names a command, and the daemon runs it.

So, like ssh with its config, hpod trusts a study file only when nobody but its own user (or
root) could have written it: the file must be owned by the daemon's user or by root, and not
writable by others, nor by a group anyone else is in (a user private group is fine). The same
holds for a symbolic link used as a study file (its owner) and for the programs the study runs
from its files (command[0], and arguments that name files relative to the study file).
docs/safety.md explains the choices.

Checks take a stat result rather than a path where they can, so the caller judges exactly the
file it reads (an fstat of the open descriptor): swapping the file after the check gains nothing.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from hpod.errors import StudySpecError

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _trusted_owner(owner: int, uid: int) -> bool:
    # root can change any file anyway, so a root-owned file adds no risk.
    return owner in (uid, 0)


def group_is_private(gid: int, uid: int) -> bool:
    """True when the group holds the daemon's user alone: a user private group (the Debian and
    Ubuntu default, with umask 002), where "writable by the group" adds no other writer. The
    rule of Debian's ssh for its own files."""
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    if gid != user.pw_gid or any(member != user.pw_name for member in group.gr_mem):
        return False
    return not any(other.pw_gid == gid and other.pw_uid != uid for other in pwd.getpwall())


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _who_may_write(st: os.stat_result, uid: int) -> str | None:
    """Who besides the owner may write the file, in words; None when nobody may."""
    group = bool(st.st_mode & stat.S_IWGRP) and not group_is_private(st.st_gid, uid)
    others = bool(st.st_mode & stat.S_IWOTH)
    if group and others:
        return f"its group ({_group_name(st.st_gid)}) and by everyone"
    if group:
        return f"its group ({_group_name(st.st_gid)})"
    return "everyone" if others else None


def untrusted_reason(target: str, st: os.stat_result, *, uid: int,
                     what: str) -> tuple[str, str] | None:
    """(message, fix) when the file described by `st` may have been written by someone else.

    `what` names the file in the message ("the study file", "the program"); `target` is the
    path the fix must name (the real file behind any symbolic link).
    """
    me = user_name(uid)
    if not _trusted_owner(st.st_uid, uid):
        owner = user_name(st.st_uid)
        return (
            f"{what} is owned by {owner}, but the daemon runs as {me}: hpod runs only files its "
            f"own user (or root) owns, because their commands run as {me}",
            f"if you trust it, take it over: chown {me} {target} (or run the daemon as {owner})",
        )
    who = _who_may_write(st, uid) if st.st_mode & _WRITABLE_BY_OTHERS else None
    if who is not None:
        return (
            f"{what} is writable by {who} ({stat.filemode(st.st_mode)}): whoever can change "
            f"it can make hpod run any command as {me}",
            f"chmod go-w {target}",
        )
    return None


def check_study_file(path: Path, st: os.stat_result, *, link: os.stat_result | None = None,
                     uid: int | None = None) -> None:
    """Raise StudySpecError unless the study file (`st`: fstat of what is read) is trusted.

    `link` is the lstat of `path` when it is a symbolic link: the link must be the user's (or
    root's) too, or another user could point it at a file of their choosing.
    """
    uid = os.geteuid() if uid is None else uid
    if link is not None and not _trusted_owner(link.st_uid, uid):
        me, owner = user_name(uid), user_name(link.st_uid)
        raise StudySpecError(
            f"is a symbolic link owned by {owner}, but the daemon runs as {me}: hpod follows "
            "only links its own user (or root) made",
            path=str(path),
            fix=f"remove it, or make it yourself: ln -sfn {os.path.realpath(path)} {path}",
        )
    target = os.path.realpath(path) if link is not None else str(path)
    what = "the study file" if link is None else f"the study file it links to ({target})"
    problem = untrusted_reason(target, st, uid=uid, what=what)
    if problem is not None:
        message, fix = problem
        raise StudySpecError(message, path=str(path), fix=fix)


def check_command(path: Path, command: Sequence[str], source: Sequence[str],
                  *, uid: int | None = None) -> None:
    """Raise StudySpecError when a program the study runs from its files is not trusted.

    Checked: command[0] when the study names a file (a path, or a program found on PATH), and
    every argument that names a file relative to the study file (`python train.py`: train.py).
    The interpreter running hpod itself (what `python` resolves to) is trusted by definition.
    """
    uid = os.geteuid() if uid is None else uid
    for index, arg in enumerate(command):
        if index == 0:
            if arg == sys.executable:
                continue
        elif not _is_study_file_argument(arg, source, index):
            continue
        try:
            st = os.stat(arg)
        except OSError:
            continue  # not ours to judge: the launch reports a missing program
        if not stat.S_ISREG(st.st_mode):
            continue
        target = os.path.realpath(arg)
        what = "the program" if index == 0 else "the file"
        problem = untrusted_reason(target, st, uid=uid, what=f"{what} {target}")
        if problem is not None:
            message, fix = problem
            raise StudySpecError(message, path=str(path), field=f"command[{index}]", fix=fix)


def _is_study_file_argument(arg: str, source: Sequence[str], index: int) -> bool:
    """An argument the parser made absolute because, written relative, it names a file from the
    study file's folder (`train.py`, `../src/train.py`)."""
    written = str(source[index]) if index < len(source) else arg
    return not os.path.isabs(written) and not written.startswith("-") and os.path.isabs(arg)
