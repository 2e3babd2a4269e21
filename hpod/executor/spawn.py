"""Starting a trial without a preexec_fn, so that CPython spawns it with vfork.

A preexec_fn makes CPython fork() the daemon, copying its page tables (numpy and scipy are
loaded: hundreds of MB mapped) and running Python in the child: about 10 ms of blocked event
loop and 5 ms of CPU per trial, against about 1 ms and 0.2 ms with vfork. The preexec_fn did two
things, done here another way:

- PR_SET_PDEATHSIG: the argv is prefixed with `setpriv --pdeathsig KILL --` (util-linux),
  which sets it and execs the program in the same process. The setting survives that exec
  (it is cleared only by exec of a set-user-ID or capability-carrying program, as before).
- the pipes on descriptors 3 and 4: see executor/fd_slots.py.

setpriv execs the program itself, so an exec failure would surface as setpriv's exit status
127 instead of an OSError from Popen. `direct_program` checks in the parent that the exec will
work; when it might not, the executor takes the preexec path, which reports the failure
exactly as it always did.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

_ELF_MAGIC = b"\x7fELF"
_SHEBANG = b"#!"
_HEADER_BYTES = 256  # what Linux reads of a #! line (BINPRM_BUF_SIZE)
_MAX_INTERPRETER_DEPTH = 4  # the kernel follows at most this many nested #! interpreters
_CHECK_TIMEOUT = 10.0


def find_setpriv() -> str | None:
    """The path of a setpriv that accepts --pdeathsig (util-linux 2.33+); None when there is
    none or this is not Linux. Runs it once (`setpriv --pdeathsig KILL -- setpriv --version`)."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        logger.debug("no setpriv on PATH: trials start through a preexec_fn")
        return None
    try:
        done = subprocess.run([path, "--pdeathsig", "KILL", "--", path, "--version"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=_CHECK_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        logger.debug("%s cannot be run (%s): trials start through a preexec_fn", path, e)
        return None
    if done.returncode != 0:
        logger.debug("%s refuses --pdeathsig (util-linux older than 2.33?): trials start "
                     "through a preexec_fn", path)
        return None
    return path


def with_pdeathsig(setpriv: str, argv: list[str]) -> list[str]:
    """`argv` run with SIGKILL as its parent-death signal."""
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def direct_program(program: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """The file that exec would run for `program` in `cwd` with `env` (searched on env's PATH
    when the name has no slash, as Popen and execvp both do), when the kernel runs it directly:
    an executable ELF file or a #! script whose interpreter is one. None when the exec would
    fail, or when the file is of a kind the kernel may refuse (execvp then runs it with
    /bin/sh where Popen raised ENOEXEC): the caller then takes the preexec path."""
    if os.sep in program:
        candidates = [program]
    else:
        candidates = [os.path.join(folder, program) for folder in os.get_exec_path(env)]
    for candidate in candidates:
        path = os.path.join(cwd, candidate)  # a relative name is relative to the child's cwd
        if not _executable_file(path):
            continue  # exec goes on past ENOENT, EACCES and ENOTDIR, and so do we
        # The first executable file is the one exec runs (or fails on): decide on it alone.
        return path if _runs_directly(path, cwd, 0) else None
    return None


def _executable_file(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.access(path, os.X_OK)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return False


def _runs_directly(path: str, cwd: Path, depth: int) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
    except OSError:  # executable but not readable: only the kernel can tell
        return False
    if head.startswith(_ELF_MAGIC):
        return True
    if not head.startswith(_SHEBANG) or depth >= _MAX_INTERPRETER_DEPTH:
        return False
    line, newline, _rest = head[len(_SHEBANG):].partition(b"\n")
    # Only blanks and tabs separate the interpreter from its argument, as in the kernel: in
    # "#!/bin/sh\r" (a CRLF script) the interpreter is "/bin/sh\r", which does not exist.
    name = line.replace(b"\t", b" ").strip(b" ").partition(b" ")[0]
    if not newline or not name:
        return False
    interpreter = os.path.join(cwd, os.fsdecode(name))
    return _executable_file(interpreter) and _runs_directly(interpreter, cwd, depth + 1)
