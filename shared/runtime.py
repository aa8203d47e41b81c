"""The Python runtime as the services set it up: the cycle collector's pace."""

from __future__ import annotations

import gc

# A request to ingest or a batch of the aggregator allocates tens of thousands of
# short-lived objects, nearly all freed by reference counting as soon as they are done
# with. At the cycle collector's default pace (a pass every 700 allocations) the passes took
# a quarter of the CPU time of both on bench.pipeline: 3.9 - 4.5 of 15.5 - 17.8
# CPU-seconds for ingest (200,000 events), 4.65 of 18.0 for the aggregator (100,000); at a
# pass every 50,000, 0.04 - 0.17 and 0.86.
GC_THRESHOLDS = (50_000, 10, 10)


def collect_cycles_rarely(*, freeze: bool = False) -> None:
    """Run the cycle collector at :data:`GC_THRESHOLDS`. With ``freeze``, what exists now
    (modules, settings, clients: what lives as long as the process) is never walked again;
    only for a process's own start-up, not for an application that tests build many times."""
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
