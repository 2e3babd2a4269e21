"""Trials on a Ray cluster: the same study files, pipe protocol and store, other machines.

The daemon stays where it is (store, TUI, the one writer); each trial runs in a Ray actor
(`TrialHost`, executor/ray_host.py) that Ray places on a node with the trial's CPUs and GPUs,
and that starts the trial there as the local executor would. Ray is imported only here and
only once a study chooses it (`executor = "ray"`); docs/cluster.md is the user's side.

Placing an actor is the study's *lease* (`RayLeases`, what the controller waits on instead of
the local `ResourcePool`): waiting for a busy cluster is waiting for a lease, which pause, stop
and shutdown cancel as they cancel a wait for a local GPU. The lease's environment carries a
private token naming its actor; `RayExecutor.launch` takes it out and runs the trial there.
A placed actor that ran its trial cleanly waits `IDLE_KEEP` seconds for the next lease of the
same shape, which then skips Ray's worker start-up (hundreds of milliseconds).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from hpod.errors import DaemonError, LaunchError
from hpod.executor.ray_host import Placement, TrialHost
from hpod.executor.ray_trial import RayTrial, actor_errors
from hpod.resources import Lease, PlacementError
from hpod.spec_sections import ray_installed

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hpod[ray]'"
#: Names a lease's actor in the lease's environment; never reaches the trial (launch pops it).
TOKEN_VARIABLE = "HPOD_RAY_HOST"
#: Seconds a placed actor, its trial done, waits for the next lease of the same shape.
IDLE_KEEP = 2.0
_CLUSTER_FIX = ("install hpod and its dependencies in the same Python environment (the same "
                "paths) on every Ray node; see docs/cluster.md")


def require_ray() -> Any:
    """The ray module, or a DaemonError that says how to install it."""
    if not ray_installed():
        raise DaemonError(f"the Ray executor needs Ray, which is not installed here; install "
                          f"it with: {INSTALL_HINT}")
    import ray

    return ray


@dataclass(eq=False)
class Host:
    """A placed actor: Ray has given it `shape` (cpus, gpus) on `placement.node`."""

    actor: Any
    placement: Placement
    shape: tuple[float, float]
    label: str = field(init=False)

    def __post_init__(self) -> None:
        where = f"ray:{self.placement.node}"
        self.label = f"{where}/gpu:{self.placement.gpus}" if self.placement.gpus else where


class RayCluster:
    """The daemon's one connection to Ray (`address` None: a local Ray instance), its actors,
    and the executor its studies share. `ray.init` holds one cluster per process."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.executor = RayExecutor(self)
        self._ray: Any = None
        self._host_class: Any = None
        self.failed = False  # a connect was tried and failed: another address may replace it
        self._initialized_here = False
        self._connecting: asyncio.Lock | None = None
        self._tokens = itertools.count(1)
        self._held: dict[str, Host] = {}  # token -> a leased actor no trial has taken yet
        self._idle: dict[tuple[float, float], list[tuple[Host, asyncio.TimerHandle]]] = {}
        self._hosts: set[Host] = set()  # every live actor, killed at close
        self._feasible: set[tuple[float, float]] = set()

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"<RayCluster {self.address or 'local'} actors={len(self._hosts)} idle={idle}>"

    def leases(self, study_address: str | None = None, *, cpus_per_trial: float = 1.0
               ) -> RayLeases:
        """The lease pool of one study; `study_address` is the cluster its file names."""
        return RayLeases(self, study_address, cpus_per_trial)

    async def connect(self) -> None:
        """ray.init once (in a thread: it takes seconds); raises what ray.init raises."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._host_class is not None:
                return
            ray = require_ray()
            try:
                await _off_loop(self._init, ray)
            except Exception:
                self.failed = True
                raise
            self._ray = ray
            self._host_class = ray.remote(TrialHost)

    def _init(self, ray: Any) -> None:
        if ray.is_initialized():
            # A program embedding the daemon (or a test) connected already: use its cluster.
            logger.info("using the Ray cluster this process is connected to already")
            return
        # ray.init points PYTHONBREAKPOINT at its remote debugger for the driver; local trials
        # get this process's environment and must keep the user's breakpoint().
        breakpoint_hook = os.environ.get("PYTHONBREAKPOINT")
        if self.address:
            _check_reachable(self.address)  # ray.init retries an unreachable one for ever
        # Ray's core worker ends this whole process when the cluster's control server has
        # been gone for a minute (its default): the local studies and the daemon with it.
        # Waiting instead leaves the Ray trials interrupted and requeued, and the rest running.
        # Read by ray.init only: set for it, not for the local trials that copy os.environ.
        reconnect = os.environ.get(_RECONNECT)
        os.environ.setdefault(_RECONNECT, str(10 ** 9))
        # The actors' own output is Ray's; trials' output comes through the relay.
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        finally:
            for name, value in (("PYTHONBREAKPOINT", breakpoint_hook), (_RECONNECT, reconnect)):
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self._initialized_here = True
        logger.info("connected to Ray (%s): %s", self.address or "a local instance",
                    ray.cluster_resources())

    async def place(self, study: str, cpus: float, gpus: float) -> Host:
        """An actor with `cpus` CPUs and `gpus` GPUs, once Ray has room for it (cancellable)."""
        await self.connect()
        shape = (cpus, gpus)
        idle = self._idle.get(shape)
        if idle:
            host, timer = idle.pop()
            timer.cancel()
            return host
        await self._check_feasible(study, shape)
        return await self._start_actor(study, shape)

    async def _start_actor(self, study: str, shape: tuple[float, float]) -> Host:
        cpus, gpus = shape
        error: BaseException | None = None
        for _ in range(2):  # a worker may die while it starts; twice is no accident
            actor = self._host_class.options(num_cpus=cpus, num_gpus=gpus, max_restarts=0,
                                             max_task_retries=0).remote(gpus)
            try:
                placement = await actor.placement.remote()
            except actor_errors() as e:
                self._kill(actor)
                error = e
                logger.warning("a Ray worker for study %s died while starting: %s", study,
                               _first_line(e))
                continue
            except BaseException:  # cancelled while Ray looked for room: give the room back
                self._kill(actor)
                raise
            host = Host(actor, placement, shape)
            self._hosts.add(host)
            return host
        raise PlacementError(f"study {study!r}: a Ray worker could not start hpod's trial "
                             f"host: {_first_line(error) if error else 'no reason given'}",
                             field="executor", fix=_CLUSTER_FIX)

    async def _check_feasible(self, study: str, shape: tuple[float, float]) -> None:
        """A request no node can ever hold would wait for ever: say so instead."""
        if shape in self._feasible:
            return
        cpus, gpus = shape
        nodes = [n for n in await _off_loop(self._ray.nodes) if n.get("Alive")]
        if any(n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
               for n in nodes):
            self._feasible.add(shape)
            return
        sizes = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPU/{n['Resources'].get('GPU', 0):g}"
                          f" GPU" for n in nodes) or "no live node"
        what, fix_field = ("GPU(s)", "resources.gpus_per_trial") if gpus else \
            ("CPU(s)", "executor.cpus_per_trial")
        raise PlacementError(
            f"study {study!r} asks for {cpus:g} CPU(s) and {gpus:g} GPU(s) per trial, but no "
            f"node of the Ray cluster has that many (nodes: {sizes})", field=fix_field,
            fix=f"ask for fewer {what} per trial, or add a node that has them (ray start "
            "--address=...)")

    def hold(self, host: Host) -> str:
        token = f"{next(self._tokens)}"
        self._held[token] = host
        return token

    def claim(self, token: str | None) -> Host | None:
        """The leased actor `token` names, now the launching trial's; None if none."""
        return self._held.pop(token, None) if token else None

    def unhold(self, token: str) -> None:
        """A lease given back: its actor, if no trial took it, waits for the next lease."""
        host = self._held.pop(token, None)
        if host is not None:
            self.give_back(host, reusable=True)

    def give_back(self, host: Host, *, reusable: bool) -> None:
        """A trial is done with `host`: keep it a moment for the next trial, or end it."""
        if not reusable or host not in self._hosts or self._host_class is None:
            self._end(host)
            return
        timer = asyncio.get_running_loop().call_later(IDLE_KEEP, self._expire, host)
        self._idle.setdefault(host.shape, []).append((host, timer))

    def _expire(self, host: Host) -> None:
        idle = self._idle.get(host.shape, [])
        self._idle[host.shape] = [(h, t) for h, t in idle if h is not host]
        self._end(host)

    def _end(self, host: Host) -> None:
        self._hosts.discard(host)
        self._kill(host.actor)

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception as e:  # noqa: BLE001 - gone already, or Ray shut down
            logger.debug("ray.kill: %s", e)

    async def aclose(self) -> None:
        """End every actor (their trials die with them) and disconnect if we connected."""
        for idle in self._idle.values():
            for _host, timer in idle:
                timer.cancel()
        self._idle.clear()
        self._held.clear()
        for host in list(self._hosts):
            self._end(host)
        if self._initialized_here and self._ray is not None:
            try:  # a cluster gone away may keep it waiting: the daemon's exit must not
                await asyncio.wait_for(_off_loop(self._ray.shutdown), _SHUTDOWN_TIMEOUT)
            except TimeoutError:
                logger.warning("Ray did not disconnect within %g s; leaving it",
                               _SHUTDOWN_TIMEOUT)
            self._initialized_here = False
        self._host_class = None


class RayLeases:
    """One study's leases on the cluster; stands in for the local ResourcePool in its
    controller (`acquire`, leases' `release`). Ray, not hpod, decides where and when."""

    def __init__(self, cluster: RayCluster, study_address: str | None,
                 cpus_per_trial: float) -> None:
        if not cpus_per_trial > 0:
            raise ValueError(f"cpus_per_trial must be > 0, got {cpus_per_trial}")
        self._cluster = cluster
        self._address = study_address
        self._cpus = cpus_per_trial
        self._tokens: dict[Lease, str] = {}

    @property
    def in_use(self) -> int:
        return len(self._tokens)

    async def acquire(self, study: str, gpus_per_trial: float = 0.0,
                      min_free_memory_mb: int | None = None, *,
                      memory_limit_mb: int | None = None,
                      queued: asyncio.Event | None = None) -> Lease:
        """A placed actor for one trial of `study`. `min_free_memory_mb` is not checked on Ray
        nodes (Ray counts GPUs, not their memory); `queued` is set at once: Ray keeps the line.
        Raises PlacementError for what can never be granted: another cluster than the daemon's,
        an unreachable one, a request too big."""
        if queued is not None:
            queued.set()
        cluster = self._cluster
        if self._address and cluster.address != self._address:
            raise PlacementError(
                f"study {study!r} names the Ray cluster at {self._address}, but this daemon "
                f"uses the one at {cluster.address or 'a local Ray instance'}",
                field="executor.address",
                fix="one daemon talks to one Ray cluster: give every study the same address "
                "(or none, and hpod serve --ray-address)")
        try:
            host = await cluster.place(study, self._cpus, gpus_per_trial)
        except (PlacementError, DaemonError):
            raise
        except Exception as e:  # ray.init's ConnectionError, RuntimeError, ValueError, ...
            raise PlacementError(
                f"study {study!r}: cannot use the Ray cluster at "
                f"{cluster.address or 'a local Ray instance'}: {_first_line(e)}",
                field="executor.address", fix=_connect_fix(e)) from None
        env = {TOKEN_VARIABLE: cluster.hold(host)}
        if 0 < gpus_per_trial < 1:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # as for a shared local GPU
        if gpus_per_trial and memory_limit_mb:
            env["HPOD_GPU_MEMORY_LIMIT_MB"] = str(memory_limit_mb)
        lease = Lease(study, host.label, (), Fraction(0), env, None, self)  # type: ignore[arg-type]
        self._tokens[lease] = env[TOKEN_VARIABLE]
        return lease

    def _give_back(self, lease: Lease) -> None:  # called by Lease.release
        token = self._tokens.pop(lease, None)
        if token is not None:
            self._cluster.unhold(token)


class RayExecutor:
    """Implements executor.base.Executor on the cluster; shared by a daemon's Ray studies."""

    def __init__(self, cluster: RayCluster, *, cpus_per_trial: float = 1.0) -> None:
        self._cluster = cluster
        self._cpus = cpus_per_trial  # for a launch without a lease (benchmarks, tests)

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, preload: Sequence[str] = (),
                     slot: str | None = None) -> RayTrial:
        """Start `argv` on the actor the lease placed (or on a new one). `preload` and `slot`
        are for local warm starts and ignored. Raises LaunchError when it cannot start."""
        env = dict(env)
        host = self._cluster.claim(env.pop(TOKEN_VARIABLE, None))
        if host is None:
            try:
                host = await self._cluster.place(env.get("HPOD_STUDY", "?"), self._cpus, 0.0)
            except PlacementError as e:
                raise LaunchError(str(e)) from None
        trial_dir = Path(trial_dir)
        try:
            trial_dir.mkdir(parents=True, exist_ok=True)
            started = await host.actor.start.remote([str(a) for a in argv], env, str(cwd),
                                                    str(trial_dir))
        except actor_errors():
            started = 0  # the worker is gone: the trial's relay reports it lost
        except OSError as e:
            self._cluster.give_back(host, reusable=True)
            raise LaunchError(f"cannot create trial folder {str(trial_dir)!r}: {e}") from e
        except BaseException:
            self._cluster.give_back(host, reusable=False)
            raise
        if isinstance(started, str):
            self._cluster.give_back(host, reusable=True)
            raise LaunchError(f"{started} (on Ray node {host.placement.node})")
        logger.debug("launched pid %d on %s: %s", started, host.label, argv)
        return RayTrial(host, started, trial_dir, self._cluster.give_back)


_RECONNECT = "RAY_gcs_rpc_server_reconnect_timeout_s"
_SHUTDOWN_TIMEOUT = 10.0


def _connect_fix(error: BaseException) -> str:
    if "authentication token" in str(error).lower():
        return ("the cluster wants Ray's token authentication: start the daemon with the "
                "same RAY_AUTH_MODE (and the token) as `ray start` (docs/cluster.md)")
    return ("start the cluster (ray start --head) and give its address, e.g. "
            "address = \"127.0.0.1:6379\"")


async def _off_loop(fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a daemon thread. A Ray call can hang for good (a cluster gone away);
    asyncio.to_thread's pool is joined when the daemon exits, so one such call kept a stopped
    daemon alive, its lock already given up."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(_settle, future, None, e)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="hpod-ray-call", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError when nothing accepts a connection at `address` (host:port, or
    ray://host:port); other forms ("auto") are left to ray.init."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address} ({e.strerror or e})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
