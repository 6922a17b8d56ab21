"""A fixed pool of inference worker threads behind a bounded queue.

At most ``workers + max_queue`` requests are admitted at once (running or waiting); one more is refused
at once (the app answers 503 with ``Retry-After``), so load never piles up in memory. Each worker owns a
shallow copy of the predictor: the model's weights are shared read-only (inference mode changes no
state), while the per-request settings (``tta``) live on the worker's own copy, so no two threads ever
change the same predictor.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Job = Callable[[Any], Any]


class QueueFullError(Exception):
    """Raised by :meth:`InferencePool.submit` when every worker is busy and the queue is full."""


class InferencePool:
    """``workers`` threads, each running jobs ``fn(predictor)`` one at a time from a shared FIFO queue.

    Args:
        predictor: the :class:`polypseg.inference.Predictor` (or any object with its interface) to copy
            into each worker.
        workers: worker threads (at least 1).
        max_queue: jobs that may wait while every worker is busy (0: none wait).
    """

    def __init__(self, predictor: Any, workers: int, max_queue: int) -> None:
        self.workers, self.max_queue = int(workers), int(max_queue)
        self._jobs: queue.Queue[tuple[Job, Future] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # jobs queued or running
        self._running = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(copy.copy(predictor),), name=f"polypseg-infer-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        """Jobs admitted but not yet started by a worker."""
        with self._lock:
            return self._admitted - self._running

    @property
    def running(self) -> int:
        """Jobs a worker is running now."""
        with self._lock:
            return self._running

    def has_room(self) -> bool:
        """Whether :meth:`submit` would admit a job now."""
        with self._lock:
            return not self._closed and self._admitted < self.workers + self.max_queue

    def submit(self, fn: Job) -> Future:
        """Queue ``fn(predictor)``; its result (or exception) arrives in the returned future.

        A future cancelled before a worker starts it is skipped. Raises :class:`QueueFullError` when
        ``workers + max_queue`` jobs are already admitted, or when the pool is closed.
        """
        fut: Future = Future()
        with self._lock:
            if self._closed or self._admitted >= self.workers + self.max_queue:
                raise QueueFullError
            self._admitted += 1
        self._jobs.put((fn, fut))
        return fut

    def _work(self, predictor: Any) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():  # cancelled while waiting (timed out)
                self._release(started=False)
                continue
            with self._lock:
                self._running += 1
            try:
                fut.set_result(fn(predictor))
            except BaseException as exc:  # handed to the waiting request, which answers for it
                fut.set_exception(exc)
            finally:
                self._release(started=True)

    def _release(self, started: bool) -> None:
        with self._lock:
            self._admitted -= 1
            self._running -= int(started)

    def close(self, timeout_s: float = 5.0) -> None:
        """Refuse new jobs, let the workers finish the queued ones, and wait up to ``timeout_s`` for them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout_s)
