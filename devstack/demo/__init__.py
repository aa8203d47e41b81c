"""``callboard demo``: the whole pipeline on this machine, fed by a simulated call floor.

The demo starts Kafka and the three services under a state directory of its own
(``.callboard/demo``, on free ports, with a SQLite database there), so it neither needs
PostgreSQL nor disturbs a stack that ``callboard up`` runs. A feeder thread posts the
calls of :class:`~devstack.simulator.FloorSimulator` to the ingest service at a
live pace, a poller thread reads the API about once a second, and the terminal shows the
floor's totals, the teams and the revenue leaderboard until the time is up or Ctrl-C.
Whatever way it ends, everything the demo started is stopped before it returns.

Each run starts from an empty broker and database, plus yesterday's calls of the same
floor (posted first) so that the leaderboard's rank changes against yesterday mean
something.

The package: ``options`` (what was asked for), ``feed`` (the feeder posting the floor's
calls), ``dashboard`` (the poller and the frame it draws) and ``run`` (one run, start to
stop).
"""

from devstack.demo.dashboard import DemoView, Snapshot, format_kpi, render_dashboard, summary_line
from devstack.demo.feed import Feeder, FeedStats
from devstack.demo.options import DEFAULT_DEMO_DIR, DemoOptions
from devstack.demo.run import run_demo

__all__ = [
    "DEFAULT_DEMO_DIR",
    "DemoOptions",
    "DemoView",
    "FeedStats",
    "Feeder",
    "Snapshot",
    "format_kpi",
    "render_dashboard",
    "run_demo",
    "summary_line",
]
