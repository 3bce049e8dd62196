"""Where the flow's jobs run: on this machine (the default) or on a Dask cluster.

The Yosys runs of ``hdl.build`` (its ``--max-fit`` search and the final estimates) and
the Yosys runs and simulations of ``bench.networks`` go through one :class:`Executor`.
:func:`make_executor` gives a :class:`LocalExecutor` (threads here, each waiting on a
Yosys subprocess, as before) or, for ``--scheduler tcp://HOST:PORT``, a
:class:`DaskExecutor` that sends each job to a worker of that ``dask.distributed``
scheduler (the ``cluster`` extra). A job is a module-level function and picklable
arguments (Verilog text, a ``NetworkSpec``); only its result comes back. The synthesis
cache stays with the client (:func:`hdl.flow.synth.synthesize_many`), so results do not
depend on where a job ran. See ``docs/cluster.md``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "make_executor", "check_scheduler",
           "ClusterError"]

#: ``tcp://HOST:PORT`` or ``tls://HOST:PORT``; HOST a name, an IPv4 address or ``[IPv6]``.
_SCHEDULER = re.compile(r"(tcp|tls)://([A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})")


class ClusterError(RuntimeError):
    """The Dask scheduler cannot be used (not installed, not reachable); one line."""


def check_scheduler(address) -> str:
    """``address`` if it is ``tcp://HOST:PORT`` (or ``tls://``), else a ValueError."""
    if not isinstance(address, str):
        raise TypeError(f"scheduler must be a str like tcp://HOST:PORT, not {type(address).__name__}")
    match = _SCHEDULER.fullmatch(address)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise ValueError(f"scheduler must be tcp://HOST:PORT (or tls://HOST:PORT), not {address[:80]!r}")
    return address


class Executor(ABC):
    """Runs ``fn(*args)`` jobs somewhere and hands back their results."""

    #: True when jobs run in other processes or on other machines (no shared disk assumed).
    remote = False
    #: ``"local"`` or the scheduler's address, for messages.
    where = "local"

    @abstractmethod
    def map(self, fn: Callable, arglists: Sequence[tuple], *,
            keys: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``fn(*arglists[i])`` for every ``i``; yield ``(i, result)`` as each finishes.

        ``keys`` name the jobs (a remote scheduler runs two jobs of one key once). A job's
        exception is raised here; the jobs not yet finished are then cancelled.
        """

    @abstractmethod
    def submit(self, fn: Callable, *args, key: str | None = None):
        """One job; returns an object whose ``result()`` gives its value (or raises)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalExecutor(Executor):
    """``workers`` jobs at once in threads of this process (a job that runs Yosys waits on
    its subprocess); ``workers=1`` runs them one after another. :meth:`submit` runs its job
    at once, in this thread, as the flow did before there was an executor."""

    def __init__(self, workers: int = 1):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, not {workers!r}")
        self.workers = workers

    def map(self, fn, arglists, *, keys=None):
        arglists = list(arglists)
        if self.workers == 1:
            for i, args in enumerate(arglists):
                yield i, fn(*args)
            return
        pool = ThreadPoolExecutor(max_workers=self.workers)
        futures = {pool.submit(fn, *args): i for i, args in enumerate(arglists)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)

    def submit(self, fn, *args, key=None):
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


class DaskExecutor(Executor):
    """Jobs on the workers of a ``dask.distributed`` scheduler.

    ``client``: an existing ``distributed.Client`` (not closed here); otherwise one is
    connected to ``address`` (waiting at most ``timeout`` seconds) and closed by
    :meth:`close`.
    """

    remote = True

    def __init__(self, address: str | None = None, *, client=None, timeout: float = 20):
        try:
            import distributed
        except ImportError:
            raise ClusterError("--scheduler needs dask.distributed: pip install -c constraints.txt "
                               "-e '.[cluster]'") from None
        self._distributed = distributed
        if client is None:
            check_scheduler(address)
            try:
                client = distributed.Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {address} within "
                                   f"{timeout:g} s ({type(exc).__name__})") from None
            self._own = True
        else:
            self._own = False
        self.client = client
        self.where = client.scheduler.address

    @property
    def workers(self) -> int:
        """Threads on the cluster's workers now (an adaptive cluster may change it)."""
        return sum(self.client.nthreads().values())

    def map(self, fn, arglists, *, keys=None):
        arglists = list(arglists)
        if keys is not None and len(keys) != len(arglists):
            raise ValueError(f"keys must name every job ({len(arglists)}), not {len(keys)}")
        futures = {}
        for i, args in enumerate(arglists):
            future = self._submit(fn, args, None if keys is None else keys[i])
            futures.setdefault(future.key, (future, []))[1].append(i)
        try:
            for future in self._distributed.as_completed([f for f, _ in futures.values()],
                                                         loop=self.client.loop):
                value = self._result(future)
                for i in futures[future.key][1]:
                    yield i, value
        finally:
            self.client.cancel([f for f, _ in futures.values() if not f.done()])

    def submit(self, fn, *args, key=None):
        return _DaskJob(self, self._submit(fn, args, key))

    def _result(self, future):
        """The job's value or its own exception; a job the cluster lost is a ClusterError."""
        from concurrent.futures import CancelledError
        try:
            return future.result()
        except (self._distributed.KilledWorker, CancelledError) as exc:
            raise ClusterError(f"the Dask cluster at {self.where} lost job {future.key} "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None

    def _submit(self, fn, args, key):
        if key is None:
            return self.client.submit(fn, *args, pure=False)
        return self.client.submit(fn, *args, key=key)

    def close(self):
        if self._own:
            self.client.close()


class _DaskJob:
    def __init__(self, executor, future):
        self._executor, self._future = executor, future

    def result(self):
        return self._executor._result(self._future)


def make_executor(scheduler: str | None = None, *, workers: int = 1) -> Executor:
    """A :class:`DaskExecutor` for ``scheduler`` (``tcp://HOST:PORT``), else a
    :class:`LocalExecutor` with ``workers`` jobs at once."""
    if scheduler is None:
        return LocalExecutor(workers)
    return DaskExecutor(check_scheduler(scheduler))
