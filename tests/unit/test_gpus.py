"""GPU inventory without a GPU: a stand-in NVML module and a fake `nvidia-smi` on PATH.

The NVML module and the nvidia-smi executable are the system edge; everything above them
(parsing, CUDA_VISIBLE_DEVICES, --gpus, the `hpod gpus` text, sampling) is the real code.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpod.gpu_monitor import GpuMonitor, memory_of_group
from hpod.gpus import (GpuInfo, GpuProbeError, NvmlProbe, SmiProbe, cuda_visible, describe_gpus,
                       discover_gpus, open_probe, parse_memory_mb, parse_smi, select_gpus)

MIB = 1 << 20


class FakeNvml:
    """Duck-types the part of pynvml hpod calls. GPUs: dicts of uuid, name, total, used (MiB)."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[dict], *, broken: bool = False) -> None:
        self.gpus = gpus
        self.broken = broken
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.broken:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return self.gpus[h]["uuid"].encode()  # older nvidia-ml-py versions return bytes

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h]["name"]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        g = self.gpus[h]
        return SimpleNamespace(total=g["total"] * MIB, used=g["used"] * MIB,
                               free=(g["total"] - g["used"]) * MIB)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        if self.gpus[h].get("util") is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=self.gpus[h]["util"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if mb is None else mb * MIB)
                for pid, mb in self.gpus[h].get("procs", {}).items()]


def four_gpus() -> list[dict]:
    return [{"uuid": f"GPU-{c * 8}-0000", "name": "NVIDIA RTX A4000", "total": 16376,
             "used": 100 * i, "util": 10 * i} for i, c in enumerate("abcd")]


def fake_smi(folder: Path, body: str, code: int = 0) -> Path:
    """An executable `nvidia-smi` in `folder` that records its arguments and prints `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args"\ncat <<\'EOF\'\n{body}EOF\n'
                      f"exit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


SMI_ROWS = ("0, GPU-aaaa-1111, NVIDIA A100-SXM4-40GB, 40960, 1024, 3\n"
            "1, GPU-bbbb-2222, NVIDIA A100-SXM4-40GB, 40960, 39000, 97\n")


def no_nvml() -> object:
    raise ImportError("No module named 'pynvml'")


# -- NVML -------------------------------------------------------------------------------------


def test_nvml_reads_every_gpu_in_mib_with_processes_and_missing_readings() -> None:
    gpus = four_gpus()
    gpus[3]["util"] = None
    gpus[1]["procs"] = {4242: 2048, 4343: None}
    nvml = FakeNvml(gpus)
    probe = NvmlProbe(nvml)
    found = probe.query()
    assert [g.index for g in found] == [0, 1, 2, 3]
    assert found[2] == GpuInfo(2, "GPU-cccccccc-0000", "NVIDIA RTX A4000", 16376, 200, 20, {})
    assert found[1].processes == {4242: 2048}  # a hidden process memory is left out
    assert found[3].utilization is None
    assert found[2].memory_free_mb == 16176
    probe.close()
    probe.close()
    assert nvml.shutdowns == 1


def test_a_broken_nvml_falls_back_to_nvidia_smi(tmp_path: Path) -> None:
    path = fake_smi(tmp_path / "bin", SMI_ROWS)
    probe, notes = open_probe({"PATH": str(path)}, load_nvml=lambda: FakeNvml([], broken=True))
    assert isinstance(probe, SmiProbe)
    assert notes == ["NVML could not start: Driver Not Loaded"]
    args = (path / "args").read_text().split()
    assert args == ["--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu",
                    "--format=csv,noheader,nounits"]


def test_nvml_is_preferred_when_it_works(tmp_path: Path) -> None:
    path = fake_smi(tmp_path / "bin", SMI_ROWS)
    probe, notes = open_probe({"PATH": str(path)}, load_nvml=lambda: FakeNvml(four_gpus()))
    assert probe is not None and probe.source == "nvml" and notes == []


def test_without_nvml_or_nvidia_smi_there_is_no_gpu(tmp_path: Path) -> None:
    inventory = discover_gpus(environ={"PATH": str(tmp_path)}, probe=open_probe(
        {"PATH": str(tmp_path)}, load_nvml=no_nvml)[0])
    assert inventory.source == "none" and inventory.usable == []
    probe, notes = open_probe({"PATH": str(tmp_path)}, load_nvml=no_nvml)
    assert probe is None
    assert notes == ["NVML: nvidia-ml-py is not installed (pip install nvidia-ml-py)",
                     "nvidia-smi: not found on PATH"]
    text = describe_gpus(discover_gpus(environ={}, probe=None))
    assert text.startswith("No GPU found") and "--slots" in text


# -- nvidia-smi ---------------------------------------------------------------------------------


def test_nvidia_smi_rows_are_parsed_including_missing_values_and_commas_in_names() -> None:
    rows = parse_smi("0, GPU-a, Tesla T4, 15360, 0, 0\n\n"
                     "1, GPU-b, Some GPU, rev 2, [N/A], [N/A], [Not Supported]\n")
    assert rows[0] == GpuInfo(0, "GPU-a", "Tesla T4", 15360, 0, 0)
    assert rows[1] == GpuInfo(1, "GPU-b", "Some GPU, rev 2", None, None, None)
    assert rows[1].memory_free_mb is None
    with pytest.raises(GpuProbeError, match="unexpected line"):
        parse_smi("No devices were found\n")


def test_nvidia_smi_on_path_is_found_and_read(tmp_path: Path) -> None:
    path = fake_smi(tmp_path / "bin", SMI_ROWS)
    inventory = discover_gpus(environ={"PATH": str(path)},
                              probe=open_probe({"PATH": str(path)}, load_nvml=no_nvml)[0])
    assert inventory.source == "nvidia-smi"
    assert [(g.index, g.uuid, g.memory_free_mb, g.utilization) for g in inventory.usable] == [
        (0, "GPU-aaaa-1111", 39936, 3), (1, "GPU-bbbb-2222", 1960, 97)]


def test_a_failing_nvidia_smi_is_no_gpu_with_its_message(tmp_path: Path) -> None:
    body = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    path = fake_smi(tmp_path / "bin", body, code=9)
    probe, notes = open_probe({"PATH": str(path)}, load_nvml=no_nvml)
    assert probe is None
    assert notes[-1] == ("nvidia-smi exited with code 9: NVIDIA-SMI has failed because it "
                         "couldn't communicate with the NVIDIA driver.")


# -- CUDA_VISIBLE_DEVICES and --gpus ----------------------------------------------------------


@pytest.fixture
def gpus() -> list[GpuInfo]:
    return NvmlProbe(FakeNvml(four_gpus())).query()


@pytest.mark.parametrize(("value", "indices", "cut"), [
    (None, [0, 1, 2, 3], False),
    ("", [], False),
    ("1,3", [1, 3], False),
    ("3, 1", [3, 1], False),
    ("0,7,1", [0], True),  # CUDA stops at the first entry that names no device
    ("-1", [], True),
    ("GPU-cccccccc", [2], False),  # a UUID prefix, as CUDA accepts
    ("GPU-bbbbbbbb-0000,0", [1, 0], False),
    ("GPU-,2", [], True),  # a prefix matching several GPUs names none
    ("2,2", [2], False),
])
def test_cuda_visible_devices_is_read_the_way_cuda_reads_it(gpus, value, indices, cut) -> None:
    visible, note = cuda_visible(gpus, value)
    assert [g.index for g in visible] == indices
    assert (note is not None) == cut


def test_gpus_selection_all_none_and_a_list(gpus) -> None:
    assert select_gpus(gpus, "all") == gpus
    assert select_gpus(gpus, "none") == []
    assert [g.index for g in select_gpus(gpus, "0,2")] == [0, 2]
    assert [g.index for g in select_gpus(gpus, "GPU-dddd")] == [3]
    with pytest.raises(ValueError, match=r"'5' is not a GPU hpod can use \(usable: 0, 1, 2, 3\)"):
        select_gpus(gpus, "0,5")


def test_selection_applies_after_cuda_visible_devices_and_says_why_gpus_are_left_out() -> None:
    probe = NvmlProbe(FakeNvml(four_gpus()))
    inventory = discover_gpus("2", environ={"CUDA_VISIBLE_DEVICES": "1,2"}, probe=probe)
    assert [g.index for g in inventory.usable] == [2]
    assert inventory.excluded == {0: "hidden by CUDA_VISIBLE_DEVICES='1,2'",
                                  3: "hidden by CUDA_VISIBLE_DEVICES='1,2'",
                                  1: "not chosen by --gpus 2"}
    with pytest.raises(ValueError, match="'0' is not a GPU hpod can use"):
        discover_gpus("0", environ={"CUDA_VISIBLE_DEVICES": "1,2"}, probe=probe)


def test_asking_for_a_gpu_where_there_is_none_fails() -> None:
    with pytest.raises(ValueError, match="no GPU was found"):
        discover_gpus("0", environ={}, probe=None)
    assert discover_gpus("none", environ={}, probe=None).usable == []


def test_a_probe_that_fails_at_discovery_means_no_gpu() -> None:
    nvml = FakeNvml(four_gpus())
    probe = NvmlProbe(nvml)
    nvml.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(nvml.NVMLError("GPU is lost"))
    inventory = discover_gpus(environ={}, probe=probe)
    assert inventory.source == "none" and inventory.found == []
    assert inventory.notes == ["NVML: GPU is lost"] and nvml.shutdowns == 1


# -- hpod gpus -------------------------------------------------------------------------------


def test_describe_gpus_says_what_each_gpu_does() -> None:
    gpus = four_gpus()
    gpus[1]["used"] = 16000
    gpus[0]["procs"] = {777: 3000}
    inventory = discover_gpus("0,1,2", environ={"CUDA_VISIBLE_DEVICES": "0,1,2"},
                              probe=NvmlProbe(FakeNvml(gpus)))
    text = describe_gpus(inventory, min_free_mb=1024, placements={0: ["mnist#3", "mnist#4"]})
    assert text.splitlines()[0] == "4 GPU(s) found through nvml; hpod uses 3."
    assert "gpu:0  NVIDIA RTX A4000  GPU-aaaaaaaa-0000" in text
    assert "memory 15.6 GiB used of 16.0 GiB (376 MiB free), utilisation 10%" in text
    assert "skipped for now: less than 1.0 GiB free" in text
    assert "not used: hidden by CUDA_VISIBLE_DEVICES='0,1,2'" in text
    assert "processes: pid 777 (2.9 GiB)" in text
    assert "hpod trials: mnist#3, mnist#4" in text


# -- memory sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mb"), [
    (4096, 4096), ("4GiB", 4096), ("4 gib", 4096), ("512MiB", 512), ("1.5G", 1536),
    ("8GB", 7630), ("1024k", 1), ("0", 0), (2048.0, 2048), ("1T", 1 << 20),
])
def test_memory_sizes(text, mb) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("bad", ["4 parsecs", "GiB", "-1", -1, True, 1.5, None, "4 GiB extra",
                                 2**40])
def test_memory_sizes_refused(bad) -> None:
    with pytest.raises(ValueError, match="memory size"):
        parse_memory_mb(bad)


# -- utilisation sampling ----------------------------------------------------------------------


async def test_the_monitor_samples_the_chosen_gpus_and_survives_a_failing_probe() -> None:
    nvml = FakeNvml(four_gpus())
    samples: list[tuple[float, list[GpuInfo]]] = []
    monitor = GpuMonitor(NvmlProbe(nvml), lambda at, gpus: samples.append((at, gpus)),
                         interval=1.0, indices=[1, 3])
    got = await monitor.sample()
    assert [g.index for g in got] == [1, 3] and samples[0][1] == got
    assert [g.utilization for g in got] == [10, 30]
    nvml.gpus[1]["util"] = 55
    real_count = nvml.nvmlDeviceGetCount
    nvml.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(nvml.NVMLError("Unknown Error"))
    assert await monitor.sample() is None and len(samples) == 1
    nvml.nvmlDeviceGetCount = real_count
    assert [g.utilization for g in await monitor.sample()] == [55, 30]


async def test_the_monitor_runs_until_cancelled() -> None:
    enough = asyncio.Event()
    samples: list[list[GpuInfo]] = []

    def keep(_at: float, gpus: list[GpuInfo]) -> None:
        samples.append(gpus)
        if len(samples) >= 3:
            enough.set()

    task = asyncio.create_task(GpuMonitor(NvmlProbe(FakeNvml(four_gpus())), keep,
                                          interval=0.01).run())
    await asyncio.wait_for(enough.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(len(s) == 4 for s in samples)


def test_only_nvml_is_sampled(tmp_path: Path) -> None:
    assert GpuMonitor.supported(NvmlProbe(FakeNvml([])))
    assert not GpuMonitor.supported(SmiProbe("nvidia-smi"))
    assert not GpuMonitor.supported(None)


def test_memory_of_a_process_group() -> None:
    me = os.getpid()
    gpus = [GpuInfo(0, "GPU-a", "x", 100, 50, 0, {me: 300, 2**22 + 17: 999}),
            GpuInfo(1, "GPU-b", "x", 100, 50, 0, {me: 200})]
    assert memory_of_group(gpus, os.getpgid(me)) == 500
    assert memory_of_group(gpus, 2**22 + 18) == 0


# -- layering ----------------------------------------------------------------------------------


def test_gpu_and_keras_modules_import_no_heavy_library() -> None:
    code = ("import json, sys, hpod.gpus, hpod.gpu_monitor, hpod.resources, hpod.keras\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    roots = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert roots & {"tensorflow", "keras", "pynvml", "numpy", "aiosqlite", "textual"} == set()
