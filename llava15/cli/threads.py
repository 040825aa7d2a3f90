"""How many CPU threads torch uses, and how long its idle threads spin.

torch sizes its OpenMP pool from the machine's cores, and libgomp lets a waiting thread spin for
a long while before it sleeps. On a small machine shared with another busy process, a spinning
thread takes the time slices its partner needs: a training step of the demo's model went from
58 ms to 238 ms (4x) beside one busy process. Measured on 2 cores (`bench/thread_cliff.py`, the
median of three runs): a short spin (`GOMP_SPINCOUNT=1000`) keeps the quiet step at 61 ms and
the busy one at 131 ms (one thread alone takes 100-107 ms either way), while a passive wait
policy (`OMP_WAIT_POLICY=PASSIVE`) costs the quiet step 42% (83 ms) for 110 ms when busy. So the
command line sets the short spin unless the user chose a policy or a spin count, and counts the
cores this process may run on (`os.sched_getaffinity`, which honours taskset and container CPU
sets). Both must be decided before torch is imported: OpenMP reads its environment once, when it
loads.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


SPIN_COUNT = "1000"  # libgomp spin iterations before a waiting thread sleeps (default 300,000)


def configure_threads(requested: int | None) -> int | None:
    """Set the OpenMP environment for this process before torch loads: a short spin
    (`GOMP_SPINCOUNT`) unless the user set `GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`, and the thread
    count `requested`, else the user's `OMP_NUM_THREADS`, else the usable cores when the affinity
    mask holds fewer cores than the machine (otherwise torch's own default, one per physical
    core). Returns the count it set, or None where torch decides."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    if requested is None and not os.environ.get("OMP_NUM_THREADS"):
        cores = usable_cores()
        if cores < (os.cpu_count() or cores):
            requested = cores
    if requested is not None:
        os.environ["OMP_NUM_THREADS"] = str(requested)
    return requested
