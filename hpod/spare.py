"""A spare trial process: import the slow modules now, become a trial later.

    python -m hpod.spare [--path0 DIR] -- MODULE...

executor/warm.py starts it exactly as a cold trial is started (its own session, SIGKILL when
the daemon dies, the report and control pipes on the descriptors named by HPOD_REPORT_FD and
HPOD_CONTROL_FD, stdin from /dev/null), but with the trial's environment less what only the
trial may see (HPOD_*, the GPU placement; CUDA_VISIBLE_DEVICES is "" meanwhile). Then:

1. it puts DIR — the folder of the script it will run — first on sys.path, as
   `python script.py` would, and imports the modules (at the low priority the executor gives
   it, see executor/warm.py); it refuses to go on if that opened a GPU device;
2. it writes READY on the report pipe and waits on the control pipe for one JSON line: the
   trial's argv, env, working directory and trial folder;
3. it becomes the trial: environment replaced (before any trial code runs: CUDA_VISIBLE_DEVICES
   and TensorFlow's settings take effect), working directory, stdout/stderr on the trial
   folder's files, sys.argv; it writes STARTED (or FAILED and exits,
   and the executor starts the trial cold) and runs the script as `python script.py` would.

Only the standard library is imported here before the trial: the trial finds these modules
already imported, and nothing else of hpod's.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: HPOD_TRIAL_DIR in a spare's initial environment: room for the trial's folder, written there
#: at the hand-off (see _TrialDirInEnviron). The characters are only a reservation.
TRIAL_DIR_ROOM = "-" * 4096
READY = b"hpod-spare ready\n"
STARTED = b"hpod-spare started\n"
FAILED = b"hpod-spare failed "  # followed by the reason on the same line
#: Exit codes before READY (the executor then stops using spares for this configuration).
EXIT_USAGE = 64
EXIT_GPU_OPENED = 65


def main(args: list[str]) -> None:
    path0, modules = _parse(args)
    report_fd = int(os.environ["HPOD_REPORT_FD"])
    control_fd = int(os.environ["HPOD_CONTROL_FD"])
    added = _added_by_interpreter()
    reserved = _TrialDirInEnviron.find()
    if path0 is not None and not sys.flags.safe_path:
        sys.path[0] = path0
    for name in modules:
        importlib.import_module(name)  # an ImportError ends the spare with its traceback
    device = _gpu_device_opened()
    if device is not None:
        print(f"hpod.spare: importing {' '.join(modules)} opened {device}: a spare must not "
              "touch a GPU before it knows which one its trial gets", file=sys.stderr)
        sys.exit(EXIT_GPU_OPENED)
    os.write(report_fd, READY)
    launch = _read_launch(control_fd)
    if launch is None:  # the executor closed the pipe: it does not need us any more
        return
    try:
        script = _become_trial(launch, report_fd, control_fd, added, reserved)
    except Exception as e:  # nothing of the trial ran yet: the executor starts it cold instead
        os.write(report_fd, FAILED + repr(e).encode("utf-8", "replace").replace(b"\n", b" ")
                 + b"\n")
        sys.exit(1)
    os.write(report_fd, STARTED)
    _run_script(script, launch["argv"][0])


def _parse(args: list[str]) -> tuple[str | None, list[str]]:
    path0 = None
    rest = list(args)
    try:
        while rest and rest[0] != "--":
            option = rest.pop(0)
            if option != "--path0":
                raise ValueError(f"unknown option {option!r}")
            path0 = rest.pop(0)
        modules = rest[1:]
    except (IndexError, ValueError) as e:
        print(f"usage: python -m hpod.spare [--path0 DIR] -- MODULE... ({e})", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    return path0, modules


def _added_by_interpreter() -> dict[str, str]:
    """Variables the interpreter put in its own environment at start-up (PEP 538 sets
    LC_CTYPE under the C locale): a cold trial has them on top of what it was given."""
    try:
        with open("/proc/self/environ", "rb") as f:
            given = f.read().split(b"\0")
    except OSError:
        return {}
    keys = {os.fsdecode(item.partition(b"=")[0]) for item in given if item}
    return {k: v for k, v in os.environ.items() if k not in keys}


class _TrialDirInEnviron:
    """The HPOD_TRIAL_DIR entry of the environment block the kernel shows as /proc/PID/environ.

    That block is the one exec() wrote; setting os.environ does not change it, and a process the
    trial forks without exec shows it as its own. hpod finds what a trial left behind after a
    `kill -9` of the daemon by HPOD_TRIAL_DIR there (executor/leftovers.py), so the trial's
    folder is written into the reserved entry itself, in place.
    """

    _PREFIX = b"HPOD_TRIAL_DIR="

    def __init__(self, address: int, size: int) -> None:
        self._address = address
        self._size = size  # of "HPOD_TRIAL_DIR=...", without its NUL

    @classmethod
    def find(cls) -> _TrialDirInEnviron | None:
        import ctypes

        try:
            environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
        except (OSError, ValueError):
            return None
        wanted = cls._PREFIX + TRIAL_DIR_ROOM.encode()
        index = 0
        while environ[index]:
            address = environ[index]
            if ctypes.string_at(address) == wanted:  # up to its NUL: never past the block
                return cls(address, len(wanted))
            index += 1
        return None

    def write(self, trial_dir: str | None) -> None:
        """Raises ValueError when the folder's name does not fit (the trial then starts cold)."""
        import ctypes

        entry = b"" if trial_dir is None else self._PREFIX + os.fsencode(trial_dir) + b"\0"
        room = self._size + 1
        if len(entry) > room:
            raise ValueError(f"trial folder name longer than {len(TRIAL_DIR_ROOM)} bytes")
        rest = room - len(entry)  # filled with a harmless entry, so the block stays well formed
        filler = (b"HPOD_SPARE_PAD=" + b"_" * rest)[:rest - 1] + b"\0" if rest else b""
        ctypes.memmove(self._address, entry + filler, room)


def _gpu_device_opened() -> str | None:
    """A /dev/nvidia* file among our descriptors: a CUDA driver was initialised."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            return target
    return None


def _read_launch(fd: int) -> dict[str, Any] | None:
    """One JSON line. Nothing else arrives before we answer it, so reading past it is safe."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def _become_trial(launch: dict[str, Any], report_fd: int, control_fd: int,
                  added: dict[str, str], reserved: _TrialDirInEnviron | None) -> str:
    """Apply the trial's launch; the script's path. Raises before anything is irreversible."""
    argv: list[str] = launch["argv"]
    trial_dir: str = launch["trial_dir"]
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC  # as open(..., "ab")
    # The names of hpod.log_cap.LOG_NAMES, spelled out: a spare imports nothing of hpod's
    # beyond what a trial needs, so that it starts as fast as it can.
    out = os.open(os.path.join(trial_dir, "stdout.log"), flags, 0o666)
    err = os.open(os.path.join(trial_dir, "stderr.log"), flags, 0o666)
    try:
        os.chdir(launch["cwd"])
        environ = dict(launch["env"])
        environ["HPOD_REPORT_FD"] = str(report_fd)
        environ["HPOD_CONTROL_FD"] = str(control_fd)
        for key, value in added.items():
            environ.setdefault(key, value)
        # os.environ writes through to the C environment, where the CUDA driver and
        # TensorFlow's C++ read CUDA_VISIBLE_DEVICES and TF_* when they first need them.
        if reserved is not None:
            reserved.write(environ.get("HPOD_TRIAL_DIR"))
        os.environ.clear()
        os.environ.update(environ)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out, 1)
        os.dup2(err, 2)
    finally:
        os.close(out)
        os.close(err)
    script = argv[1]
    sys.argv = list(argv[1:])
    sys.orig_argv = list(argv)
    if not sys.flags.safe_path:
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    return script


def _run_script(script: str, program: str) -> None:
    """As `python script.py`: `__main__`, exit codes, tracebacks without our own frames."""
    path = os.path.abspath(script)  # what the interpreter uses for __file__ (3.9+), not argv
    if not os.path.isdir(path):  # a folder (or zip) with __main__.py is runpy's to open
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            print(f"{program}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}",
                  file=sys.stderr)
            sys.exit(2)
    try:
        if os.path.isfile(path) and not path.endswith((".pyc", ".pyz", ".zip")):
            _exec_as_main(path)
        else:  # a folder or zip with __main__.py, a .pyc
            runpy.run_path(path, run_name="__main__")
    except SystemExit:
        raise  # the interpreter turns it into the exit code, as for a cold script
    except BaseException:
        # The interpreter prints it (KeyboardInterrupt then ends by SIGINT, anything else
        # with 1); the frames above the script's are ours and runpy's, not the trial's.
        if os.path.isfile(path):
            sys.excepthook = _from_script(sys.excepthook, path)
        raise


def _exec_as_main(script: str) -> None:
    """What the interpreter does for `python script.py` (runpy.run_path differs in small ways:
    `__package__` "", no `__loader__`, a temporary `__main__` module)."""
    import builtins
    from importlib.machinery import SourceFileLoader

    main = type(sys)("__main__")
    # As the interpreter's own __main__ (pylifecycle's add_main_module, then pymain's file
    # run): an empty __annotations__, the builtins module, a source loader, no __cached__.
    main.__dict__.update(__annotations__={}, __builtins__=builtins, __file__=script,
                         __cached__=None, __loader__=SourceFileLoader("__main__", script))
    sys.modules["__main__"] = main
    with open(script, "rb") as f:
        source = f.read()
    # dont_inherit: this module's `from __future__ import annotations` is not the script's.
    code = compile(source, script, "exec", dont_inherit=True)
    exec(code, main.__dict__)


Hook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def _from_script(hook: Hook, script: str) -> Hook:
    def excepthook(kind: type[BaseException], value: BaseException,
                   tb: TracebackType | None) -> None:
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        # The default hook prints the exception's own __traceback__, not its argument.
        # None: the error is in compiling the script (SyntaxError), which has no frames.
        hook(kind, value.with_traceback(tb), tb)

    return excepthook


if __name__ == "__main__":
    main(sys.argv[1:])
