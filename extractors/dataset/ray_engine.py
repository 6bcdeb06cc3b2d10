"""``admc extract --engine ray``: the manifest's samples extracted on a Ray cluster.

One actor per worker slot (``--num-cpus-per-task`` CPUs and ``--num-gpus-per-task`` GPUs each) holds
the live extractors of :class:`extractors.dataset.builder.SampleExtractor`, loaded once per actor;
every manifest row is one actor task running exactly what a local worker runs.  The results come
back to the driver, which writes them to the dataset's per-sample cache
(:func:`extractors.dataset.builder.save_cached`) as they arrive, so an interrupted run resumes like a
local one and the dataset is assembled by the same code.

Faults: Ray restarts a killed worker process (``max_restarts=-1``: the actor comes back with its
extractors); meanwhile the driver takes it out of service and sends its rows to the others.  A row
whose task fails (the file raises, or its worker died) is run again, ``retries`` times at most, then
reported and skipped with the error exactly as the local engine words it.  (Rows are not retried
with Ray's ``max_task_retries``: it spends them at once on an actor that is still restarting; only
the pings that wait for a restart use it.)

Ray is an optional extra (``pip install 'admc[ray]'``), imported only here, when the engine runs.
The media paths of the manifest must be readable at the same paths on every node (a shared
filesystem); the dataset is written on the driver's machine only.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from dataclasses import dataclass

from extractors.dataset.builder import ExtractSettings, ManifestRow, worker_extractor

RETRIES = 3                 # re-runs of a failed row (bad file, dead worker) before it is skipped
IN_FLIGHT = 2               # tasks queued per worker, so that none waits for the driver
READY_TIMEOUT_S = 900.0     # the workers must be placed and started by then
INSTALL_HINT = "pip install 'admc[ray]' (in a checkout: pip install -e '.[ray]')"


class EngineError(ValueError):
    """The Ray engine cannot run (Ray missing, no cluster, too few resources); the message says why."""


class ExtractWorker:
    """One Ray actor: the live extractors, loaded once, applied to one manifest row per task."""

    def __init__(self, settings_json: dict, threads: int, device: str):
        self.extractor = worker_extractor(settings_json, threads, device)

    def ready(self) -> int:
        return os.getpid()

    def extract(self, row_json: dict) -> dict:
        return self.extractor(ManifestRow.from_json(row_json))


def import_ray():
    """The ``ray`` module, or an :class:`EngineError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray: Ray is not installed in this environment; install it with "
                          f"{INSTALL_HINT}") from None
    return ray


def _reason(ray, e: Exception) -> str:
    """A failed task's error in the local engine's words (``Type: message``)."""
    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}".strip()
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}".strip()


@dataclass
class RayEngine:
    """Extraction on a Ray cluster (``address``: ``auto``, ``HOST:PORT``, or None for Ray's default)."""

    address: str | None = None
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0
    workers: int | None = None      # actors; None: as many as the cluster's resources hold
    retries: int = RETRIES

    def __post_init__(self):
        if not (self.num_cpus_per_task > 0 and math.isfinite(self.num_cpus_per_task)):
            raise EngineError(f"--num-cpus-per-task {self.num_cpus_per_task}: must be a number > 0")
        if not (self.num_gpus_per_task >= 0 and math.isfinite(self.num_gpus_per_task)):
            raise EngineError(f"--num-gpus-per-task {self.num_gpus_per_task}: must be a number >= 0")
        if self.workers is not None and self.workers < 1:
            raise EngineError(f"--workers {self.workers}: must be at least 1")
        if self.retries < 0:
            raise EngineError(f"retries {self.retries}: must be >= 0")

    # -- the cluster -------------------------------------------------------------------------
    def _connect(self, ray) -> None:
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            where = f"--address {self.address}" if self.address else "the default Ray cluster"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"--engine ray: cannot connect to {where}: {first}") from None

    def pool_size(self, resources: dict, rows: int) -> int:
        """How many actors: ``workers``, or as many as fit ``resources`` (never more than ``rows``)."""
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        have = f"the cluster has {cpus:g} CPUs and {gpus:g} GPUs"
        if self.num_cpus_per_task > cpus:
            raise EngineError(f"--num-cpus-per-task {self.num_cpus_per_task:g}: {have}")
        if self.num_gpus_per_task > gpus:
            raise EngineError(f"--num-gpus-per-task {self.num_gpus_per_task:g}: {have}")
        fit = int(cpus // self.num_cpus_per_task)
        if self.num_gpus_per_task > 0:
            fit = min(fit, int(gpus // self.num_gpus_per_task))
        if self.workers is not None and self.workers > fit:
            raise EngineError(f"--workers {self.workers}: {have}, room for {fit} worker(s) of "
                              f"{self.num_cpus_per_task:g} CPUs / {self.num_gpus_per_task:g} GPUs")
        return max(1, min(self.workers or fit, rows))

    def _start(self, ray, settings: ExtractSettings, n: int) -> list:
        actor = ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task,
                           max_restarts=-1)(ExtractWorker)
        device = "cuda" if self.num_gpus_per_task > 0 else "cpu"
        threads = max(1, int(self.num_cpus_per_task))
        actors = [actor.remote(settings.to_json(), threads, device) for _ in range(n)]
        try:
            ray.get([a.ready.options(max_task_retries=-1).remote() for a in actors],
                    timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise EngineError(f"--engine ray: {n} worker(s) not started within {READY_TIMEOUT_S:.0f} s "
                              f"(cluster resources {ray.cluster_resources()})") from None
        except ray.exceptions.RayError as e:
            raise EngineError(f"--engine ray: the workers could not start: {_reason(ray, e)}") from None
        return actors

    # -- the run -----------------------------------------------------------------------------
    def run(self, rows: list[ManifestRow], settings: ExtractSettings, done) -> dict:
        """Extract ``rows``; ``done(index, result, error)`` once per row, in completion order.
        Returns the record ``meta.json["extract"]["engine"]`` keeps."""
        info = {"name": "ray", "address": self.address, "num_cpus_per_task": self.num_cpus_per_task,
                "num_gpus_per_task": self.num_gpus_per_task, "retries": self.retries, "workers": 0,
                "extracted": len(rows)}
        if not rows:
            return info                       # everything was cached: no cluster needed
        ray = import_ray()
        self._connect(ray)
        actors = []
        try:
            n = self.pool_size(ray.cluster_resources(), len(rows))
            info.update(workers=n, nodes=sum(1 for nd in ray.nodes() if nd.get("Alive")),
                        address=ray.get_runtime_context().gcs_address)
            actors = self._start(ray, settings, n)
            self._dispatch(ray, actors, rows, done)
        finally:
            for a in actors:
                ray.kill(a)
            ray.shutdown()
        return info

    def _dispatch(self, ray, actors: list, rows: list[ManifestRow], done) -> None:
        """Every row to the least-loaded worker in service, at most :data:`IN_FLIGHT` queued on each.

        A task that raises is re-run up to ``retries`` times.  A worker that dies (its tasks fail with
        ``RayActorError``) is taken out of service while Ray restarts it, its rows go back to the
        queue (an attempt each: a file that kills every worker it meets is skipped in the end), and
        a ping that waits for the restart puts it back."""
        todo, flying, attempts = deque(rows), {}, {}
        load, up = [0] * len(actors), [True] * len(actors)

        def submit():
            while todo:
                free = [i for i in range(len(actors)) if up[i] and load[i] < IN_FLIGHT]
                if not free:
                    return
                i = min(free, key=load.__getitem__)
                row = todo.popleft()
                flying[actors[i].extract.remote(row.to_json())] = (row, i)
                load[i] += 1

        def failed(row: ManifestRow, e: Exception):
            attempts[row.index] = attempts.get(row.index, 0) + 1
            if attempts[row.index] > self.retries:
                done(row.index, None, _reason(ray, e))
            else:
                todo.appendleft(row)

        submit()
        while flying:
            only_pings = all(row is None for row, _ in flying.values())
            ready, _ = ray.wait(list(flying), num_returns=1, timeout=READY_TIMEOUT_S if only_pings else None)
            if not ready:
                break                                   # no worker came back: reported below
            for ref in ready:
                row, i = flying.pop(ref)
                if row is None:                         # a ping: the worker is back, or gone for good
                    try:
                        ray.get(ref)
                        up[i] = True
                    except ray.exceptions.RayError:
                        pass
                    continue
                load[i] -= 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    if up[i]:
                        up[i] = False
                        flying[actors[i].ready.options(max_task_retries=-1).remote()] = (None, i)
                    failed(row, e)
                except ray.exceptions.RayError as e:
                    failed(row, e)
                else:
                    done(row.index, result, None)
            submit()
        if todo:
            raise EngineError(f"--engine ray: no worker left to extract the last {len(todo)} sample(s) "
                              "(those done are cached: rerun to resume)")
