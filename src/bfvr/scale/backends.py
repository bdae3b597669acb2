"""Where `Worker`s run: in this process, in local processes, or as Ray actors.

Every backend has the same shape: `describe()` (the first worker's `Worker.describe`), `submit(task)`,
`results()` (yields result dicts as tasks finish, in any order), `idle` (how many more tasks it takes
now) and `close()`. The batch driver (`bfvr.scale.batch`) hands out tasks as workers become free.

* `InlineBackend`: one `Worker` in this process (the model loaded once); per-frame progress.
* `ProcessBackend`: N spawned processes, each with one `Worker` (`concurrent.futures`); a process that
  dies takes its task with it (reported as failed; rerun to redo it). The workers die with the batch
  process: a parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`) and a thread watching the parent's
  pid (any system) send them SIGTERM when it ends, even SIGKILLed; SIGTERM makes a worker abandon its
  task (its temporary file is removed) and exit. An interrupted batch (Ctrl-C, SIGTERM, an error)
  stops its workers that way at once instead of waiting for their current videos or segments.
* `RayBackend`: N Ray actors, each with one `Worker`, placed by Ray's scheduler with ``num_cpus`` /
  ``num_gpus`` per actor. A worker that dies (killed process, lost node) is restarted by Ray
  (``max_restarts``), reloading its model, and its task is retried there (``max_task_retries``);
  a task whose retries run out is reported as failed with the reason.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from bfvr.errors import ConfigError, DependencyError
from bfvr.scale.plan import RestoreSettings
from bfvr.scale.worker import Task, Worker


class InlineBackend:
    """One worker in this process."""

    def __init__(self, settings: RestoreSettings, on_frame: Callable[[int], None] | None = None) -> None:
        self.worker = Worker(settings)
        self.on_frame = on_frame
        self._queue: deque[Task] = deque()
        self.workers = 1

    def describe(self) -> dict[str, Any]:
        return self.worker.describe()

    @property
    def idle(self) -> int:
        return 0 if self._queue else 1

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def results(self) -> Iterator[dict[str, Any]]:
        while self._queue:
            task = self._queue.popleft()
            yield self.worker.run(task, self.on_frame if task.kind != "join" else None)

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def close(self, now: bool = False) -> None:
        pass


# ------------------------------------------------------------------------------------------ processes

_WORKER: Worker | None = None
_INIT_ERROR: BaseException | None = None
#: True while this worker process runs a task (SIGTERM then unwinds it, so its temporary file is removed)
_RUNNING = False
#: how often (s) a worker checks that its parent is alive, and how long it then lets its task unwind
WATCH_SECONDS = 0.5
UNWIND_SECONDS = 10.0


class _Stop(BaseException):
    """SIGTERM in a worker process: unwinds its task (not an `Exception`: `Worker.run` must not report it)."""


def _on_term(signum: int, frame: object) -> None:
    if _RUNNING:
        raise _Stop(signum)
    os._exit(128 + signum)  # between tasks: nothing to clean up


def _watch_parent(parent: int) -> None:
    import signal
    import time

    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # the parent is gone (even SIGKILLed): stop like SIGTERM
    time.sleep(UNWIND_SECONDS)
    os._exit(128 + signal.SIGTERM)  # the task did not unwind in time


def die_with_parent(parent: int) -> None:
    """Make this worker process end when its parent (the batch process, pid `parent`) does: SIGTERM from
    the kernel when the parent dies (Linux: prctl PR_SET_PDEATHSIG) and, on any system, from a thread
    that watches `os.getppid()`. SIGTERM stops the task (its temporary file removed) and the process.
    SIGINT is ignored: Ctrl-C reaches the whole process group, and the parent stops its workers itself."""
    import signal
    import sys
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the watching thread still does it
            pass
    if os.getppid() != parent:  # the parent died before the above took effect
        os._exit(128 + signal.SIGTERM)
    threading.Thread(target=_watch_parent, args=(parent,), name="bfvr-watch-parent", daemon=True).start()


def _init_process(settings: RestoreSettings, parent: int | None = None) -> None:
    global _WORKER, _INIT_ERROR
    if parent is not None:
        die_with_parent(parent)
    try:
        _WORKER = Worker(settings)
    except Exception as e:  # e.g. the model cannot load: said by the first call, with its reason
        _INIT_ERROR = e


def _run_in_process(task: Task) -> dict[str, Any]:
    global _RUNNING
    if _INIT_ERROR is not None:
        return {
            "key": task.key,
            "kind": task.kind,
            "status": "failed",
            "segment": (task.segment or {}).get("index"),
            "reason": f"the worker could not start ({_INIT_ERROR})",
        }
    _RUNNING = True
    try:
        return _WORKER.run(task)
    except _Stop as e:  # SIGTERM (the batch stops, or its process died): the task unwound; end here
        os._exit(128 + e.args[0])
    finally:
        _RUNNING = False


def _describe_in_process() -> dict[str, Any]:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    return _WORKER.describe()


class ProcessBackend:
    """`workers` local processes (spawned, so nothing of the driver's threads or open files is inherited),
    each loading the model once."""

    def __init__(self, settings: RestoreSettings, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}.")
        _start_resource_tracker()
        if settings.threads is None:  # share the cores instead of every process taking them all
            settings.threads = max(1, (os.cpu_count() or 1) // workers)
        self.workers = workers
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_process,
            initargs=(settings, os.getpid()),
        )
        self._running: dict[Any, Task] = {}

    def describe(self) -> dict[str, Any]:
        return _unwrap_pool(self.pool.submit(_describe_in_process))

    @property
    def idle(self) -> int:
        return max(0, self.workers - len(self._running))

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def submit(self, task: Task) -> None:
        self._running[self.pool.submit(_run_in_process, task)] = task

    def results(self) -> Iterator[dict[str, Any]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self._running:
            return
        done, _ = wait(list(self._running), return_when=FIRST_COMPLETED)
        for fut in done:
            task = self._running.pop(fut)
            try:
                yield fut.result()
            except Exception as e:  # the worker process died (BrokenProcessPool) or could not send
                yield {
                    "key": task.key,
                    "kind": task.kind,
                    "status": "failed",
                    "segment": (task.segment or {}).get("index"),
                    "reason": f"the worker process died ({type(e).__name__}: {e})",
                }

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current tasks, or (`now`: an interrupted batch) at once, with
        SIGTERM (each task unwinds, removing its temporary file), then SIGKILL for one that is still
        running `UNWIND_SECONDS` later."""
        import time

        if now:
            procs = list((getattr(self.pool, "_processes", None) or {}).values())
            for p in procs:
                try:
                    p.terminate()
                except (OSError, ValueError, AttributeError):
                    pass
            deadline = time.monotonic() + UNWIND_SECONDS
            for p in procs:
                try:
                    p.join(max(0.0, deadline - time.monotonic()))
                    if p.is_alive():
                        p.kill()
                        p.join(1)
                except (OSError, ValueError, AttributeError, AssertionError):
                    pass
        self.pool.shutdown(wait=True, cancel_futures=True)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the pool's queues need it) with SIGHUP blocked: it ignores
    SIGINT and SIGTERM itself but not SIGHUP, so a SIGHUP to the process group (a closed terminal) killed it
    and it was relaunched, printing KeyError tracebacks. A blocked signal stays blocked across the exec;
    the driver's own mask is restored (a SIGHUP that came meanwhile is delivered then)."""
    import signal
    from multiprocessing import resource_tracker

    hup = getattr(signal, "SIGHUP", None)
    if hup is None or not hasattr(signal, "pthread_sigmask"):
        resource_tracker.ensure_running()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {hup})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _unwrap_pool(fut) -> dict[str, Any]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except BrokenProcessPool as e:
        raise DependencyError(f"the worker processes could not start ({e}).") from None


# ------------------------------------------------------------------------------------------------ Ray


def import_ray():
    try:
        import ray
    except ImportError:
        raise DependencyError(
            "--ray needs Ray: pip install 'bfvr[cluster]' (or pip install ray) on this "
            "machine and every node of the cluster."
        ) from None
    return ray


class RayBackend:
    """`workers` Ray actors (None: as many as the cluster's CPUs / GPUs hold), each a `Worker`.

    `address`: "auto" (the cluster `ray start` made on this machine, or RAY_ADDRESS), "local" (a private
    one-machine Ray started here and stopped at the end) or a cluster address "host:port". Paths are
    passed as they are: the inputs and OUT_DIR must be at the same paths on every node (a shared
    filesystem)."""

    def __init__(
        self,
        settings: RestoreSettings,
        address: str = "auto",
        *,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        retries: int = 3,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        ray = import_ray()
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw = dict(init_kwargs or {})
            kw.setdefault("log_to_driver", False)
            kw.setdefault("include_dashboard", False)
            try:
                ray.init(address=None if address == "local" else address, **kw)
            except ConnectionError as e:
                raise ConfigError(
                    f"cannot reach a Ray cluster at '{address}' ({e}); start one with "
                    "`ray start --head` (docs/scale.md) or pass --ray local."
                ) from None
            self._owns = True
        if settings.threads is None and cpus_per_worker >= 1:
            settings.threads = int(cpus_per_worker)
        res = ray.cluster_resources()
        if workers is None:
            if gpus_per_worker:
                workers = int(res.get("GPU", 0) // gpus_per_worker)
            else:
                workers = int(res.get("CPU", 1) // max(cpus_per_worker, 1e-6))
        if workers < 1:
            raise ConfigError(
                f"the Ray cluster has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs: "
                f"not enough for one worker of {cpus_per_worker:g} CPUs and {gpus_per_worker:g} GPUs."
            )
        actor_cls = ray.remote(_RayWorker).options(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=-1, max_task_retries=retries
        )
        self.actors = [actor_cls.remote(settings) for _ in range(workers)]
        self.workers = workers
        self.retries = retries
        # the first answer of each actor: its model loaded (or the reason it could not load)
        info = []
        for a, ref in [(a, a.describe.remote()) for a in self.actors]:
            try:
                info.append((a, ray.get(ref)))
            except ray.exceptions.RayError as e:
                info.append((a, e))
        ready = [(a, d) for a, d in info if isinstance(d, dict)]
        if not ready:
            self.close()
            raise ConfigError(f"no Ray worker could load the model ({_ray_reason(info[0][1])}).")
        self._describe = ready[0][1]
        self._idle = [a for a, _ in ready]
        self.actors = self._idle[:]
        self._running: dict[Any, tuple[Task, Any]] = {}

    def describe(self) -> dict[str, Any]:
        return self._describe

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def submit(self, task: Task) -> None:
        actor = self._idle.pop()
        self._running[actor.run.remote(task)] = (task, actor)

    def results(self) -> Iterator[dict[str, Any]]:
        ray = self.ray
        if not self._running:
            return
        done, _ = ray.wait(list(self._running), num_returns=1)
        for ref in done:
            task, actor = self._running.pop(ref)
            try:
                res = ray.get(ref)
                self._idle.append(actor)
            except ray.exceptions.RayError as e:
                # retries used up; Ray restarts the actor (max_restarts=-1) unless it cannot (e.g. its
                # model no longer loads): keep it only if it answers again
                if self._alive(actor):
                    self._idle.append(actor)
                res = {
                    "key": task.key,
                    "kind": task.kind,
                    "status": "failed",
                    "segment": (task.segment or {}).get("index"),
                    "reason": f"the Ray worker died {self.retries + 1} times on it ({_ray_reason(e)})",
                }
            yield res

    def _alive(self, actor) -> bool:
        try:
            self.ray.get(actor.pid.remote(), timeout=900)
            return True
        except Exception:
            return False

    def close(self, now: bool = False) -> None:  # ray.kill stops an actor at once either way
        for a in getattr(self, "actors", []):
            try:
                self.ray.kill(a)
            except Exception:
                pass
        if self._owns:
            self.ray.shutdown()


def _ray_reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] + ("..." if len(text) > 200 else "")


class _RayWorker:
    """The actor: one `Worker` per actor process (Ray calls `run` one task at a time)."""

    def __init__(self, settings: RestoreSettings) -> None:
        self.worker = Worker(settings)

    def describe(self) -> dict[str, Any]:
        return self.worker.describe()

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Task) -> dict[str, Any]:
        return self.worker.run(task)
