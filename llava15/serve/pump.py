"""Scheduler events -> asyncio queues, with one event-loop wake-up per burst.

The scheduler emits one event per running request per decoding step. Waking the event loop
for each (`call_soon_threadsafe` writes to a pipe every time) costs a system call and a loop
iteration per token; here the first event of a burst schedules one flush and the others ride
along, so a step of 32 rows wakes the loop about once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from llava15.serve.scheduler import Event


class EventPump:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue, Event]] = []
        self._scheduled = False

    def sink(self, queue: asyncio.Queue) -> Callable[[Event], None]:
        """A job sink (called on the scheduler thread) that delivers into `queue`.

        Raises RuntimeError once the loop is closed; the scheduler then cancels the job.
        """
        def put(event: Event) -> None:
            with self._lock:
                self._items.append((queue, event))
                if self._scheduled:
                    return
                self._scheduled = True
            self.loop.call_soon_threadsafe(self._flush)
        return put

    def _flush(self) -> None:
        with self._lock:
            items, self._items, self._scheduled = self._items, [], False
        for queue, event in items:
            queue.put_nowait(event)
