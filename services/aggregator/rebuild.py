"""``callboard rebuild``: every KPI table recomputed from the events topic, switched in live.

For a new KPI or after a bug fix. The tables the aggregator derives from the topic
(:data:`DERIVED_TABLES`) are created empty in a schema of their own,
``callboard_rebuild_<stamp>``, and an aggregator member of a new consumer group applies the
whole topic to them from offset 0, through connections whose ``search_path`` is that schema
alone, with the same code the live members run. The read API and the live members go on with
the live tables meanwhile.

Once the rebuilt tables hold every record the live ones hold, and the topic as it was when the
rebuild began, one transaction switches them in:

1. ``LOCK consumer_offset IN EXCLUSIVE MODE`` on the live table: the live members finish the
   batch they are in and wait before their next one (readers go on);
2. the rebuild applies what it still lacks of what the live tables hold;
3. the live tables move to the schema ``callboard_retired_<stamp>``, the rebuilt ones (with
   their offsets) into the live schema.

Readers see all the old tables or all the new ones, never a mix. The live members' waiting
statements resolve the table names again once the lock is released, so their next batch goes
to the new tables and continues from the offsets stored with them; records the rebuild
applied beyond the live position are skipped there as already applied.

Operator-owned tables (:data:`KEPT_TABLES`: API keys, targets, calendars, chat channels and
their deliveries, contests) are left alone. The
retired tables stay for comparison or rollback until dropped (``--drop-retired``, or
``DROP SCHEMA callboard_retired_<stamp> CASCADE``). Aborting before the switch leaves the
live tables untouched and drops the rebuild schema. PostgreSQL only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka.structs import TopicPartition
from sqlalchemy import Connection, Table, text
from sqlalchemy.exc import OperationalError

from services.aggregator import repository
from services.aggregator.consumer import AggregatorMember
from services.aggregator.settings import AggregatorSettings
from shared.db import make_engine
from shared.kafka import COMMAND_BOOTSTRAP_TIMEOUT_MS, kafka_consumer
from shared.models import metadata

log = logging.getLogger(__name__)

# Everything the aggregator writes, recomputed by a rebuild; consumer_offset first, the order
# the switch locks them in (the order a batch touches them).
DERIVED_TABLES = (
    "consumer_offset",
    "kpi_minute",
    "kpi_hour",
    "kpi_day",
    "disposition_minute",
    "disposition_day",
    "lead_fact",
    "lead_count_day",
    "lead_count_hour",
    "lead_last_minute",
    "lead_last_hour",
    "entity_state",
    "agent_team",
    "agent_state_change",
    "lead_stage",
    "stage_change",
    "sale_feed",
)
# What people enter and no event can restore: never touched by a rebuild.
KEPT_TABLES = (
    "api_key",
    "target",
    "target_change",
    "working_calendar",
    "channel",
    "channel_delivery",
    "contest",
)


class RebuildError(RuntimeError):
    pass


def derived_tables() -> list[Table]:
    return [metadata.tables[name] for name in DERIVED_TABLES if name in metadata.tables]


def caught_up(rebuilt: dict[int, int], reference: dict[int, int]) -> bool:
    """The rebuilt tables hold at least every record ``reference`` says was applied."""
    return all(rebuilt.get(p, 0) >= offset for p, offset in reference.items())


@dataclass(frozen=True, slots=True)
class RebuildResult:
    records: int
    seconds: float
    offsets: dict[int, int]
    retired_schema: str | None


class _NotYet(Exception):
    """The rebuild did not reach the live position while the live members were held."""


class Rebuild:
    def __init__(
        self,
        settings: AggregatorSettings,
        *,
        progress: Callable[[str], None] = log.info,
        allow_partial_history: bool = False,
        hold_seconds: float = 30.0,
        lock_timeout_seconds: float = 10.0,
    ) -> None:
        if not settings.database_url.startswith("postgresql"):
            raise RebuildError(
                "rebuild needs PostgreSQL (it switches schemas); on SQLite, stop the "
                "aggregator, delete the database file, migrate and start it again"
            )
        self.settings = settings
        self.progress = progress
        self.allow_partial_history = allow_partial_history
        self.hold_seconds = hold_seconds
        self.lock_timeout_seconds = lock_timeout_seconds
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.schema = f"callboard_rebuild_{stamp}"
        self.retired = f"callboard_retired_{stamp}"
        self.group_id = f"{settings.group_id}.rebuild-{stamp}"
        self.live = make_engine(settings.database_url, pool_size=2)

    def run(
        self, stop: threading.Event | None = None, *, drop_retired: bool = False
    ) -> RebuildResult:
        started = time.monotonic()
        topic_end = self._topic_end()
        with self.live.connect() as connection:
            live_schema: str = connection.execute(text("SELECT current_schema()")).scalar_one()
        self._create_schema()
        switched = False
        member: AggregatorMember | None = None
        rebuild_engine = make_engine(
            self.settings.database_url,
            connect_args={"options": f"-c search_path={self.schema}"},
        )
        try:
            member = AggregatorMember(
                rebuild_engine,
                self.settings.model_copy(
                    update={"group_id": self.group_id, "aggregator_metrics_port": 0}
                ),
            )
            last_report = 0.0
            while not switched:
                if stop is not None and stop.is_set():
                    raise RebuildError("rebuild stopped before the switch; live tables untouched")
                member.poll_once()
                if time.monotonic() - last_report < 2.0:
                    continue
                last_report = time.monotonic()
                rebuilt, live = self._offsets(self.schema), self._offsets(live_schema)
                self.progress(
                    f"rebuilt {sum(rebuilt.values()):,} records; live tables at "
                    f"{sum(live.values()):,}; topic end at start {sum(topic_end.values()):,}"
                )
                if caught_up(rebuilt, topic_end) and caught_up(rebuilt, live):
                    switched = self._switch(member, live_schema)
            offsets = self._offsets(live_schema)
        finally:
            if member is not None:
                member.close()
            rebuild_engine.dispose()
            with self.live.begin() as connection:
                # Empty after a switch; otherwise the unfinished rebuild.
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                if switched and drop_retired:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.retired}" CASCADE'))
            self.live.dispose()
        return RebuildResult(
            records=sum(offsets.values()),
            seconds=time.monotonic() - started,
            offsets=offsets,
            retired_schema=None if drop_retired else self.retired,
        )

    def _topic_end(self) -> dict[int, int]:
        """The topic's end offsets now; refuses a topic that no longer starts at offset 0."""
        consumer = kafka_consumer(
            self.settings,
            bootstrap_timeout_ms=COMMAND_BOOTSTRAP_TIMEOUT_MS,
            client_id="callboard-rebuild",
            allow_auto_create_topics=False,
        )
        try:
            topic = self.settings.events_topic
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RebuildError(f"the events topic {topic} does not exist")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            beginning = consumer.beginning_offsets(tps)
            trimmed = {tp.partition: o for tp, o in beginning.items() if o > 0}
            if trimmed and not self.allow_partial_history:
                raise RebuildError(
                    f"the topic no longer holds its first records (retention removed them; "
                    f"first offsets {trimmed}): a rebuild would drop that history. "
                    "Use --allow-partial-history to rebuild from what is retained."
                )
            return {tp.partition: o for tp, o in consumer.end_offsets(tps).items() if o > 0}
        finally:
            consumer.close()

    def _create_schema(self) -> None:
        with self.live.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            metadata.create_all(
                connection.execution_options(schema_translate_map={None: self.schema}),
                tables=derived_tables(),
            )
        self.progress(f"rebuilding into schema {self.schema} (consumer group {self.group_id})")

    def _offsets(self, schema: str, connection: Connection | None = None) -> dict[int, int]:
        if connection is None:
            with self.live.connect() as own:
                return self._offsets(schema, own)
        in_schema = connection.execution_options(schema_translate_map={None: schema})
        return repository.stored_offsets(in_schema, self.settings.events_topic)

    def _switch(self, member: AggregatorMember, live_schema: str) -> bool:
        """Swap the rebuilt tables in; False when the live members could not be held level."""
        names = [table.name for table in derived_tables()]
        try:
            with self.live.begin() as connection:
                connection.execute(
                    text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_seconds * 1000)}ms'")
                )
                connection.execute(
                    text(f'LOCK TABLE "{live_schema}".consumer_offset IN EXCLUSIVE MODE')
                )
                deadline = time.monotonic() + self.hold_seconds
                while not caught_up(
                    self._offsets(self.schema, connection), self._offsets(live_schema, connection)
                ):
                    if time.monotonic() > deadline:
                        raise _NotYet
                    member.poll_once()
                connection.execute(text(f'CREATE SCHEMA "{self.retired}"'))
                for name in names:
                    connection.execute(
                        text(
                            f'LOCK TABLE "{live_schema}"."{name}", "{self.schema}"."{name}" '
                            "IN ACCESS EXCLUSIVE MODE"
                        )
                    )
                for name in names:
                    connection.execute(
                        text(f'ALTER TABLE "{live_schema}"."{name}" SET SCHEMA "{self.retired}"')
                    )
                for name in names:
                    connection.execute(
                        text(f'ALTER TABLE "{self.schema}"."{name}" SET SCHEMA "{live_schema}"')
                    )
        except _NotYet:
            self.progress("the live tables moved on while held; trying the switch again")
            return False
        except OperationalError as exc:  # lock_timeout: a long reader or writer was in the way
            self.progress(f"switch postponed: {str(exc).splitlines()[0]}")
            return False
        self.progress(
            f"switched: the live tables are the rebuilt ones; the old ones are in {self.retired}"
        )
        return True
