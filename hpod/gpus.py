"""The GPUs of this machine: what is there, which ones hpod may use, how busy each one is.

Where the facts come from, first that works: NVML through nvidia-ml-py (`import pynvml`),
else `nvidia-smi --query-gpu=...`, else nothing (trials then run on CPU slots). The source is
a *probe*: an object with `source`, `query()` and `close()`; tests inject a fake one, which is
the only fake the GPU code needs.

Which GPUs hpod may use: those the source reports, narrowed by an inherited
CUDA_VISIBLE_DEVICES (indices or `GPU-...` UUIDs, read the way CUDA reads them: the list ends
at the first entry that names no GPU), then by `hpod serve --gpus 0,2 | all | none`. Indices are
NVML's, which follow the PCI bus order; the leases set CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA
inside a trial counts the same way.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpod.errors import HpodError

logger = logging.getLogger(__name__)

_MIB = 1 << 20
SMI_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "utilization.gpu")
SMI_TIMEOUT = 15.0  # nvidia-smi can take seconds on a loaded box; a hung driver must not hang us


class GpuProbeError(HpodError):
    """The GPU source could not be read (no driver, nvidia-smi failed, NVML error)."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as read at one moment. Memory in MiB; None where the GPU does not say."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int | None
    memory_used_mb: int | None
    utilization: int | None = None  # percent of time a kernel ran over the last sample period
    processes: Mapping[int, int] = field(default_factory=dict)  # pid -> MiB (NVML only)

    @property
    def memory_free_mb(self) -> int | None:
        if self.memory_total_mb is None or self.memory_used_mb is None:
            return None
        return max(0, self.memory_total_mb - self.memory_used_mb)


class GpuProbe(Protocol):
    source: str  # "nvml" | "nvidia-smi" | a test's name

    def query(self) -> list[GpuInfo]:
        """Every GPU of the machine, freshly read. Raises GpuProbeError. May run in a thread."""
        ...

    def close(self) -> None: ...


class NvmlProbe:
    """Reads GPUs through an NVML module (pynvml from nvidia-ml-py, or a test's stand-in)."""

    source = "nvml"

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except self._error as e:  # no driver, or a driver/library mismatch
            raise GpuProbeError(f"NVML could not start: {e}") from e
        self._open = True

    def query(self) -> list[GpuInfo]:
        nv = self._nvml
        try:
            return [self._read(nv.nvmlDeviceGetHandleByIndex(i), i)
                    for i in range(nv.nvmlDeviceGetCount())]
        except self._error as e:  # e.g. a GPU fell off the bus
            raise GpuProbeError(f"NVML: {e}") from e

    def _read(self, handle: Any, index: int) -> GpuInfo:
        nv = self._nvml
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        utilization = self._optional(lambda: int(nv.nvmlDeviceGetUtilizationRates(handle).gpu))
        processes = self._optional(
            lambda: _process_memory(nv.nvmlDeviceGetComputeRunningProcesses(handle)))
        return GpuInfo(index=index, uuid=_text(nv.nvmlDeviceGetUUID(handle)),
                       name=_text(nv.nvmlDeviceGetName(handle)),
                       memory_total_mb=int(memory.total) // _MIB,
                       memory_used_mb=int(memory.used) // _MIB,
                       utilization=utilization, processes=processes or {})

    def _optional(self, read: Callable[[], Any]) -> Any:
        # Consumer and virtual GPUs answer NVML_ERROR_NOT_SUPPORTED for some readings.
        try:
            return read()
        except self._error:
            return None

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._error as e:
                logger.debug("nvmlShutdown failed: %s", e)


class SmiProbe:
    """Reads GPUs by running `nvidia-smi --query-gpu=...` (one short process per query)."""

    source = "nvidia-smi"

    def __init__(self, executable: str, *, timeout: float = SMI_TIMEOUT) -> None:
        self.executable = executable
        self._timeout = timeout

    def query(self) -> list[GpuInfo]:
        argv = [self.executable, f"--query-gpu={','.join(SMI_FIELDS)}",
                "--format=csv,noheader,nounits"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self._timeout,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GpuProbeError(f"nvidia-smi could not run: {e}") from e
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise GpuProbeError(f"nvidia-smi exited with code {done.returncode}"
                                + (f": {said[0]}" if said else ""))
        return parse_smi(done.stdout)

    def close(self) -> None:
        pass


def parse_smi(text: str) -> list[GpuInfo]:
    """Rows of `nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < len(SMI_FIELDS):
            raise GpuProbeError(f"nvidia-smi wrote an unexpected line: {line!r}")
        # The name is the one field that could hold a comma: it is whatever lies between.
        index, uuid, name = cells[0], cells[1], ", ".join(cells[2:-3])
        total, used, util = (_smi_number(c) for c in cells[-3:])
        if not index.isdigit():
            raise GpuProbeError(f"nvidia-smi wrote an unexpected line: {line!r}")
        gpus.append(GpuInfo(int(index), uuid, name, total, used, util))
    return gpus


def _smi_number(cell: str) -> int | None:
    try:  # "[N/A]" and "[Not Supported]" mean: this GPU does not say
        return round(float(cell))
    except ValueError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _process_memory(processes: Sequence[Any]) -> dict[int, int]:
    # usedGpuMemory is None where the driver hides it (e.g. inside some containers).
    return {int(p.pid): int(p.usedGpuMemory) // _MIB for p in processes
            if getattr(p, "usedGpuMemory", None) is not None}


def _import_pynvml() -> Any:
    import pynvml  # nvidia-ml-py: optional, pure Python

    return pynvml


def open_probe(environ: Mapping[str, str] | None = None, *,
               load_nvml: Callable[[], Any] = _import_pynvml) -> tuple[GpuProbe | None, list[str]]:
    """The first GPU source that works, and a note on each one that did not."""
    env = os.environ if environ is None else environ
    notes: list[str] = []
    try:
        module = load_nvml()
    except ImportError:
        notes.append("NVML: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    else:
        try:
            return NvmlProbe(module), notes
        except GpuProbeError as e:
            notes.append(str(e))
    executable = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if executable is None:
        notes.append("nvidia-smi: not found on PATH")
        return None, notes
    probe = SmiProbe(executable)
    try:
        probe.query()
    except GpuProbeError as e:
        notes.append(str(e))
        return None, notes
    return probe, notes


# -- which GPUs hpod may use ------------------------------------------------------------------


def _match(entry: str, gpus: Sequence[GpuInfo]) -> GpuInfo | None:
    """The GPU an entry of CUDA_VISIBLE_DEVICES or --gpus names: an index or a UUID (prefix)."""
    if entry.isdigit():
        return next((g for g in gpus if g.index == int(entry)), None)
    if entry.upper().startswith("GPU-"):
        found = [g for g in gpus if g.uuid.lower().startswith(entry.lower())]
        return found[0] if len(found) == 1 else None
    return None


def cuda_visible(gpus: Sequence[GpuInfo], value: str | None) -> tuple[list[GpuInfo], str | None]:
    """The GPUs an inherited CUDA_VISIBLE_DEVICES leaves visible, and a note when it cut short."""
    if value is None:
        return list(gpus), None
    visible: list[GpuInfo] = []
    for entry in (e.strip() for e in value.split(",")):
        gpu = _match(entry, gpus) if entry else None
        if gpu is None:
            # CUDA's rule: the list ends at the first entry that names no device.
            note = (f"CUDA_VISIBLE_DEVICES={value!r}: entry {entry!r} names no GPU here, so the "
                    "list ends before it (as CUDA reads it)") if value.strip() else None
            return visible, note
        if gpu not in visible:
            visible.append(gpu)
    return visible, None


def select_gpus(gpus: Sequence[GpuInfo], selection: str) -> list[GpuInfo]:
    """Apply `--gpus`: "all", "none", or a comma list of indices / UUIDs among `gpus`.

    Raises ValueError naming the entry that matches no usable GPU.
    """
    text = selection.strip().lower()
    if text in ("all", ""):
        return list(gpus)
    if text == "none":
        return []
    chosen: list[GpuInfo] = []
    for entry in (e.strip() for e in selection.split(",")):
        gpu = _match(entry, gpus)
        if gpu is None:
            have = ", ".join(str(g.index) for g in gpus) or "none"
            raise ValueError(f"--gpus {selection}: {entry!r} is not a GPU hpod can use "
                             f"(usable: {have}); see `hpod gpus`")
        if gpu not in chosen:
            chosen.append(gpu)
    return chosen


@dataclass(slots=True)
class GpuInventory:
    """What was found and what hpod may use. Owns the probe: `close()` it when done."""

    source: str  # "nvml", "nvidia-smi" or "none"
    found: list[GpuInfo]  # every GPU the source reports
    usable: list[GpuInfo]  # the ones trials may be placed on
    probe: GpuProbe | None
    notes: list[str] = field(default_factory=list)  # why a source or a GPU is not used
    excluded: dict[int, str] = field(default_factory=dict)  # index -> why hpod leaves it alone

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()


def discover_gpus(selection: str = "all", *, environ: Mapping[str, str] | None = None,
                  probe: GpuProbe | None | str = "auto") -> GpuInventory:
    """Find the GPUs and decide which ones hpod may use. `probe="auto"` tries NVML then nvidia-smi.

    Raises ValueError when `selection` names a GPU that is not there or not visible.
    """
    env = os.environ if environ is None else environ
    notes: list[str] = []
    if probe == "auto":
        probe, notes = open_probe(env)
    found: list[GpuInfo] = []
    if isinstance(probe, str):
        raise ValueError(f"probe must be a GpuProbe, None or 'auto', got {probe!r}")
    if probe is not None:
        try:
            found = probe.query()
        except GpuProbeError as e:
            notes.append(str(e))
            probe.close()
            probe = None
    visible, note = cuda_visible(found, env.get("CUDA_VISIBLE_DEVICES"))
    if note:
        notes.append(note)
    excluded = {g.index: f"hidden by CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r}"
                for g in found if g not in visible}
    if probe is None and selection.strip().lower() not in ("all", "none", ""):
        raise ValueError(f"--gpus {selection}: no GPU was found "
                         f"({'; '.join(notes) or 'no GPU source'}); see `hpod gpus`")
    usable = select_gpus(visible, selection)
    excluded.update({g.index: f"not chosen by --gpus {selection}"
                     for g in visible if g not in usable})
    return GpuInventory(probe.source if probe else "none", found, usable, probe, notes, excluded)


# -- memory sizes -------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_UNITS_MB = {"": 1.0, "m": 1.0, "mib": 1.0, "g": 1024.0, "gib": 1024.0, "t": 1024.0**2,
             "tib": 1024.0**2, "k": 1 / 1024, "kib": 1 / 1024, "mb": 1e6 / _MIB,
             "gb": 1e9 / _MIB, "tb": 1e12 / _MIB, "kb": 1e3 / _MIB}
MEMORY_FORMS = 'MiB as an integer (4096) or a string with a unit ("4GiB", "512MiB", "8GB")'
MAX_MEMORY_MB = 1 << 30  # a PiB: more than any GPU will hold for years


def parse_memory_mb(value: object) -> int:
    """A memory size in MiB: an integer is MiB; a string has a unit ("4GiB", "512 MiB", "8GB").

    Decimal units (MB, GB) are converted and rounded up; K/M/G/T alone are binary.
    Raises ValueError with the accepted forms.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        mb: float = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)) \
            and match.group(2).lower() in _UNITS_MB:
        mb = float(match.group(1)) * _UNITS_MB[match.group(2).lower()]
    else:
        raise ValueError(f"{value!r} is not a memory size: write {MEMORY_FORMS}")
    if not 0 <= mb <= MAX_MEMORY_MB:
        raise ValueError(f"memory size {value!r} is out of range (0 to 1 PiB)")
    return math.ceil(mb - 1e-9)


def format_memory(mb: int | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb} MiB"


# -- `hpod gpus` ----------------------------------------------------------------------------------


def describe_gpus(inventory: GpuInventory, *, min_free_mb: int | None = None,
                  placements: Mapping[int, Sequence[str]] | None = None) -> str:
    """What `hpod gpus` prints: the source, then one block per GPU found.

    `min_free_mb` marks GPUs that a trial would skip right now; `placements` maps a GPU index
    to the trials running there (from the store's placements, when a daemon runs).
    """
    if not inventory.found:
        why = "; ".join(inventory.notes) or "no GPU source"
        return f"No GPU found ({why}).\nTrials run on CPU slots (hpod serve --slots N)."
    lines = [f"{len(inventory.found)} GPU(s) found through {inventory.source}; "
             f"hpod uses {len(inventory.usable)}."]
    for gpu in inventory.found:
        util = "?" if gpu.utilization is None else f"{gpu.utilization}%"
        lines.append(f"  gpu:{gpu.index}  {gpu.name}  {gpu.uuid}")
        lines.append(f"         memory {format_memory(gpu.memory_used_mb)} used of "
                     f"{format_memory(gpu.memory_total_mb)} "
                     f"({format_memory(gpu.memory_free_mb)} free), utilisation {util}")
        if gpu.index in inventory.excluded:
            lines.append(f"         not used: {inventory.excluded[gpu.index]}")
        elif min_free_mb and gpu.memory_free_mb is not None and gpu.memory_free_mb < min_free_mb:
            lines.append(f"         skipped for now: less than {format_memory(min_free_mb)} free "
                         "(--min-free-memory / [resources] min_free_memory)")
        if gpu.processes:
            lines.append("         processes: " + ", ".join(
                f"pid {pid} ({format_memory(mb)})" for pid, mb in sorted(gpu.processes.items())))
        trials = (placements or {}).get(gpu.index)
        if trials:
            lines.append("         hpod trials: " + ", ".join(trials))
    lines.extend(f"  note: {note}" for note in inventory.notes)
    return "\n".join(lines)

