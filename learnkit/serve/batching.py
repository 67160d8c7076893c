"""Dynamic batching: concurrent requests gathered into one call of a batch function on a worker thread.

Each request brings a list of items (one photo, or several table rows). The batcher takes the first waiting
request, then gathers more until it holds ``max_batch`` items or ``max_wait_ms`` have passed, and runs the
batch function once on its own thread (the event loop keeps accepting requests meanwhile). While a batch
runs, new requests queue up, so under load batches fill without waiting; alone, a request waits at most
``max_wait_ms``. ``max_batch=1`` turns batching off (one call per request).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DynamicBatcher", "BatchStats"]


@dataclass
class BatchStats:
    """What the batcher has done so far (``/health`` shows it)."""
    requests: int = 0
    items: int = 0
    batches: int = 0
    largest_batch: int = 0
    retried_alone: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counters, and the mean items per batch.

        >>> BatchStats(requests=4, items=4, batches=2, largest_batch=3).as_dict()["mean_batch"]
        2.0
        """
        return {"requests": self.requests, "items": self.items, "batches": self.batches,
                "largest_batch": self.largest_batch, "mean_batch": round(self.items / max(self.batches, 1), 2),
                "retried_alone": self.retried_alone}


class DynamicBatcher:
    """Gathers the items of concurrent ``await submit(items)`` calls into batches for ``fn``.

    ``fn(items) -> results`` (one result per item, in order) runs on one worker thread. If a batch raises,
    each of its requests is retried alone, so one bad request gets its own error and the others their
    answers. Call ``start()`` inside the running event loop and ``await stop()`` at the end.

    >>> import asyncio
    >>> async def main():
    ...     batcher = DynamicBatcher(lambda xs: [x * 10 for x in xs], max_batch=8, max_wait_ms=20)
    ...     batcher.start()
    ...     answers = await asyncio.gather(*(batcher.submit([i]) for i in range(5)))
    ...     await batcher.stop()
    ...     return answers, batcher.stats.batches
    >>> asyncio.run(main())  # five requests, one call of fn
    ([[0], [10], [20], [30], [40]], 1)
    """

    def __init__(self, fn: Callable[[list], Sequence], max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 4096):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.fn, self.max_batch, self.max_wait = fn, int(max_batch), max_wait_ms / 1000
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start gathering (in the running event loop)."""
        self._queue = asyncio.Queue(self.max_queue)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="learnkit-batch")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop gathering; requests still queued get a ``RuntimeError``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: list) -> list:
        """The results for ``items``, computed in a batch with other requests' items.

        Raises ``asyncio.QueueFull`` when ``max_queue`` requests are already waiting."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started: call start() in the event loop first")
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((list(items), fut))
        return await fut

    async def _gather(self) -> list[tuple[list, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        n = len(batch[0][0])
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            if self._queue.empty():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    req = await asyncio.wait_for(self._queue.get(), timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    break
            else:
                req = self._queue.get_nowait()
            batch.append(req)
            n += len(req[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(items, fut) for items, fut in await self._gather() if not fut.done()]  # drop cancelled
            if not batch:
                continue
            items = [x for its, _ in batch for x in its]
            st = self.stats
            st.requests, st.items, st.batches = st.requests + len(batch), st.items + len(items), st.batches + 1
            st.largest_batch = max(st.largest_batch, len(items))
            try:
                results = list(await loop.run_in_executor(self._executor, self.fn, items))
                if len(results) != len(items):
                    raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} items")
            except Exception as e:  # noqa: BLE001 - handed to the requests
                if len(batch) == 1:
                    _settle(batch[0][1], error=e)
                    continue
                st.retried_alone += len(batch)
                for its, fut in batch:  # one bad request must not fail the others
                    try:
                        _settle(fut, list(await loop.run_in_executor(self._executor, self.fn, its)))
                    except Exception as e1:  # noqa: BLE001
                        _settle(fut, error=e1)
                continue
            start = 0
            for its, fut in batch:
                _settle(fut, results[start: start + len(its)])
                start += len(its)


def _settle(fut: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():  # the client went away
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
