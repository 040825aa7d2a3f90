"""A gate on a model's decoding step, so a serving test decides how far a request gets whatever
the machine's speed (shared by the page and the server-error tests)."""

from __future__ import annotations

import threading


class DecodeGate:
    """Stands in for `model.decode`, the scheduler's decoding step. Open, it passes every call
    through. `close()` holds every call until `allow(n)` lets n through; `hold_at(n)` lets n - 1
    more calls through and holds the n-th (the n + 1-th token: the first comes from the prefill);
    `open()` lets everything through again. `waiting` counts the calls held now. A call held for
    60 s raises (the scheduler then fails its jobs) rather than hanging the session."""

    def __init__(self, model) -> None:
        self.decode = model.decode
        self.cond = threading.Condition()
        self.permits: int | None = None  # None: open
        self.waiting = 0
        model.decode = self

    def __call__(self, *args, **kwargs):
        with self.cond:
            self.waiting += 1
            self.cond.notify_all()
            passed = self.cond.wait_for(lambda: self.permits is None or self.permits > 0, timeout=60)
            self.waiting -= 1
            if not passed:
                raise TimeoutError("a decoding step was held by the test's gate for 60 s")
            if self.permits is not None:
                self.permits -= 1
        return self.decode(*args, **kwargs)

    def close(self) -> None:
        self.hold_at(1)

    def hold_at(self, call: int) -> None:
        with self.cond:
            self.permits = call - 1

    def allow(self, steps: int = 1) -> None:
        with self.cond:
            self.permits = (self.permits or 0) + steps
            self.cond.notify_all()

    def open(self) -> None:
        with self.cond:
            self.permits = None
            self.cond.notify_all()

    def wait_held(self, timeout: float = 60.0) -> None:
        """Until a decoding step waits at the gate."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.waiting > 0, timeout), "no decoding step reached the gate"
