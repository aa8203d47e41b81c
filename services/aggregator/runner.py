"""Run one aggregator process until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from services.aggregator.consumer import AggregatorMember
from services.aggregator.retention import RetentionSchedule
from services.aggregator.settings import aggregator_settings
from shared.db import engine_for
from shared.logs import configure_logging
from shared.runtime import collect_cycles_rarely

log = logging.getLogger(__name__)


def run_forever() -> None:
    settings = aggregator_settings()
    configure_logging("aggregator", settings.log_level)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if settings.aggregator_metrics_port:
        try:
            start_http_server(
                settings.aggregator_metrics_port, addr=settings.aggregator_metrics_host
            )
        except OSError as exc:
            # Counting matters more than being scraped: run on, and say why metrics are off.
            log.error(
                "metrics endpoint not started",
                extra={"port": settings.aggregator_metrics_port, "reason": str(exc)},
            )
    engine = engine_for(settings.database_url)
    member = AggregatorMember(engine, settings, stop)
    RetentionSchedule(engine, settings).start(stop)
    log.info("aggregator started", extra={"group_id": settings.group_id})
    collect_cycles_rarely(freeze=True)
    try:
        member.run(stop)
    finally:
        stop.set()
        member.close()
        log.info("aggregator stopped")
