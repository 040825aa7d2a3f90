"""How many CPU threads torch uses, and how its idle threads wait.

torch sizes its OpenMP pool from the machine's cores and lets waiting threads spin. On a small
machine shared with another busy process, a spinning thread takes the time slices its partner
needs and a step of a small model can become many times slower (`bench/thread_cliff.py`
measures it). So the command line counts the cores this process may run on
(`os.sched_getaffinity`, which honours taskset and container CPU sets) and makes idle threads
sleep instead of spin (`OMP_WAIT_POLICY=PASSIVE`) unless the user set a policy. Both must be
decided before torch is imported: OpenMP reads its environment once, when it loads.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def configure_threads(requested: int | None) -> int | None:
    """Set the OpenMP environment for this process before torch loads: idle threads sleep
    (`OMP_WAIT_POLICY=PASSIVE` unless the user chose a policy), and the thread count is
    `requested`, else the user's `OMP_NUM_THREADS`, else the usable cores when the affinity mask
    holds fewer cores than the machine (otherwise torch's own default, one per physical core).
    Returns the count it set, or None where torch decides."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if requested is None and not os.environ.get("OMP_NUM_THREADS"):
        cores = usable_cores()
        if cores < (os.cpu_count() or cores):
            requested = cores
    if requested is not None:
        os.environ["OMP_NUM_THREADS"] = str(requested)
    return requested
