"""Database tables. Alembic migrations create them; nothing else does.

Counters are stored per minute (UTC bucket, with its local hour), per local hour and per
local day (with its week and month), per agent, team and campaign. An empty string stands
for "none" in those three columns so that they can be part of the primary key. Money and
seconds are integers in the units of ``shared.kpis.STORAGE_SCALE``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.kpis import COUNTER_KEYS
from shared.leadcounts import LEAD_FACTS, MARK_COLUMNS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

TZ = DateTime(timezone=True)
SCOPE_COLUMNS = ("agent_id", "team_id", "campaign_id")


def _scope_columns() -> list[Column[str]]:
    return [Column(name, String(64), primary_key=True) for name in SCOPE_COLUMNS]


def _counter_columns() -> list[Column[int]]:
    return [Column(key, BigInteger, nullable=False, default=0) for key in COUNTER_KEYS]


kpi_minute = Table(
    "kpi_minute",
    metadata,
    Column("bucket", TZ, primary_key=True),
    *_scope_columns(),
    Column("hour", TZ, nullable=False),
    *_counter_columns(),
)
Index("ix_kpi_minute_agent_bucket", kpi_minute.c.agent_id, kpi_minute.c.bucket)

# The minute counters summed per local hour (the start of the hour, as an instant): ranges
# that are not whole days read their whole hours here and only their edges per minute.
kpi_hour = Table(
    "kpi_hour",
    metadata,
    Column("hour", TZ, primary_key=True),
    *_scope_columns(),
    *_counter_columns(),
)

kpi_day = Table(
    "kpi_day",
    metadata,
    Column("day", Date, primary_key=True),
    *_scope_columns(),
    Column("week", Date, nullable=False),
    Column("month", Date, nullable=False),
    *_counter_columns(),
)

disposition_minute = Table(
    "disposition_minute",
    metadata,
    Column("bucket", TZ, primary_key=True),
    *_scope_columns(),
    Column("disposition", String(32), primary_key=True),
    Column("hour", TZ, nullable=False),
    Column("calls", BigInteger, nullable=False, default=0),
)

disposition_day = Table(
    "disposition_day",
    metadata,
    Column("day", Date, primary_key=True),
    *_scope_columns(),
    Column("disposition", String(32), primary_key=True),
    Column("week", Date, nullable=False),
    Column("month", Date, nullable=False),
    Column("calls", BigInteger, nullable=False, default=0),
)

# One row per fact a call, quote, sale or stage change says about a lead, so that distinct
# leads can be counted exactly for any range and scope.
lead_fact = Table(
    "lead_fact",
    metadata,
    Column("source", String(160), primary_key=True),
    Column("fact", String(16), primary_key=True),
    Column("lead_id", String(128), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("bucket", TZ, nullable=False),
    Column("hour", TZ, nullable=False),
    Column("day", Date, nullable=False),
    Column("week", Date, nullable=False),
    Column("month", Date, nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("campaign_id", String(64), nullable=False),
    Column("flag", Boolean, nullable=False, default=False),
)
Index("ix_lead_fact_fact_occurred_at", lead_fact.c.fact, lead_fact.c.occurred_at)
# A lead's facts by day: what a batch reads to see which marks its facts move.
Index("ix_lead_fact_lead_id", lead_fact.c.lead_id, lead_fact.c.fact, lead_fact.c.day)

# Distinct leads as sums (see shared.leadcounts): per scope kind (a bit each for agent, team
# and campaign; the columns outside the kind hold "") and local day, how many lead facts open
# or close their day, week or month.
lead_count_day = Table(
    "lead_count_day",
    metadata,
    Column("kind", Integer, primary_key=True, autoincrement=False),
    Column("day", Date, primary_key=True),
    *_scope_columns(),
    Column("week", Date, nullable=False),
    Column("month", Date, nullable=False),
    *(Column(name, Integer, nullable=False, default=0) for name in MARK_COLUMNS),
)


def _lead_counter_table(name: str, bucket: str) -> Table:
    """Per scope kind and ``bucket`` (a minute or a local hour), a count of leads per fact."""
    return Table(
        name,
        metadata,
        Column("kind", Integer, primary_key=True, autoincrement=False),
        Column(bucket, TZ, primary_key=True),
        *_scope_columns(),
        *(Column(fact, Integer, nullable=False, default=0) for fact in LEAD_FACTS),
    )


# Distinct leads per scope kind and local hour (see shared.leadcounts): a column per fact.
lead_count_hour = _lead_counter_table("lead_count_hour", "hour")
# Per scope kind and minute (local hour), how many leads have their latest fact of each kind
# there, over the last day or so (see shared.leadcounts): the rolling windows' distinct leads.
lead_last_minute = _lead_counter_table("lead_last_minute", "bucket")
lead_last_hour = _lead_counter_table("lead_last_hour", "hour")

# The merged facts of every call, order, quote and stage change, so a late, repeated or
# corrected event can replace what the entity contributed before.
entity_state = Table(
    "entity_state",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("state", Text, nullable=False),
)

# Where each partition of the events topic has been applied up to: written in the same
# transaction as the numbers, so the database alone says what was counted.
consumer_offset = Table(
    "consumer_offset",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", TZ, nullable=False),
)

# The roster: each agent's current team, the team of its latest event that named one.
agent_team = Table(
    "agent_team",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("team_id", String(64), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("event_id", String(128), nullable=False),
)

agent_state_change = Table(
    "agent_state_change",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    # Why the agent paused (or any state's reason the dialer gives), at most 32 characters.
    Column("reason", String(32), nullable=True),
)
Index(
    "ix_agent_state_change_agent_occurred_at",
    agent_state_change.c.agent_id,
    agent_state_change.c.occurred_at,
)

# Every sale once, when the batch that first counts it commits: what the live stream
# announces. ``seq`` orders them for a stream's cursor (``Last-Event-ID``); ``amount`` is in
# the stored money unit. A sale counted again (a replay, a rebuild) keeps its first row.
sale_feed = Table(
    "sale_feed",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(128), nullable=False, unique=True),
    Column("agent_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("campaign_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("counted_at", TZ, nullable=False),
)
Index("ix_sale_feed_counted_at", sale_feed.c.counted_at)

# API keys (shared/auth.py). Only a hash of each key is stored; ``key_id`` is the visible
# part of the key (``cb_<key_id>_<secret>``), so a key can be named without revealing it.
api_key = Table(
    "api_key",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    # Comma-separated, from ingest, read, admin.
    Column("scopes", String(64), nullable=False),
    # Comma-separated team ids a read key is limited to; NULL: every team.
    Column("team_ids", Text, nullable=True),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("revoked_at", TZ, nullable=True),
)

# The sales funnel (kpis.md, Funnel). Each lead's latest ``lead.stage_changed``, replaced only
# by a newer one (occurred_at, event_id), so the row does not depend on arrival order. A sale
# not cancelled (a ``won`` lead fact) after it makes the lead won; ``lost`` takes it out.
lead_stage = Table(
    "lead_stage",
    metadata,
    Column("lead_id", String(128), primary_key=True),
    Column("stage", String(16), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("campaign_id", String(64), nullable=False),
)

# Every stage change, once per event: the stages leads reached in a period (conversion rates)
# and the funnel as it stood at any past moment.
stage_change = Table(
    "stage_change",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("lead_id", String(128), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("campaign_id", String(64), nullable=False),
)
Index("ix_stage_change_occurred_at", stage_change.c.occurred_at)

# Targets (kpis.md, Targets and pacing): (scope, KPI, period, value). ``scope`` is agent,
# team, campaign or floor (the whole company, ``scope_id`` empty); the period is its kind and
# its first local day. The value is a decimal string, exact in every database. A deleted
# target keeps its row, so that its history stays readable.
target = Table(
    "target",
    metadata,
    Column("target_id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),
    Column("scope_id", String(64), nullable=False),
    Column("kpi", String(64), nullable=False),
    Column("period", String(8), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("value", String(40), nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("deleted_at", TZ, nullable=True),
)
Index(
    "ix_target_scope_kpi_period",
    target.c.scope,
    target.c.scope_id,
    target.c.kpi,
    target.c.period_start,
)

# Who changed which target, to what, and from when the new value holds (pacing accrues at
# the value in force at each moment of the period).
target_change = Table(
    "target_change",
    metadata,
    Column("change_id", Integer, primary_key=True, autoincrement=True),
    Column("target_id", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("value", String(40), nullable=True),
    Column("previous_value", String(40), nullable=True),
    Column("effective_from", TZ, nullable=False),
    Column("changed_at", TZ, nullable=False),
    Column("changed_by", String(128), nullable=False),
    Column("key_id", String(32), nullable=True),
)
Index("ix_target_change_target_id", target_change.c.target_id)

# Working days and hours per team (``team_id`` ``*``: every team without its own), as JSON of
# shared.playbook.WorkingCalendar: the time over which pacing spreads a target.
working_calendar = Table(
    "working_calendar",
    metadata,
    Column("team_id", String(64), primary_key=True),
    Column("calendar", Text, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# Chat channels (services/api/channels): where digests of the numbers are posted. ``url`` and
# ``secret`` are credentials, stored to be used and never shown whole. ``teams`` is a
# comma-separated list of team ids (empty: the floor); ``schedule`` as written by the admin.
channel = Table(
    "channel",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=True),
    Column("teams", Text, nullable=False),
    Column("schedule", Text, nullable=False),
    Column("report", String(32), nullable=False),
    Column("lang", String(8), nullable=False),
    Column("created_at", TZ, nullable=False),
    # The earliest moment the next message may go, so that every process sending to the
    # channel keeps together to its platform's rate limit.
    Column("next_send_at", TZ, nullable=True),
)

# One row per digest (or contest announcement) to send, claimed before it is sent: a
# scheduled slot is unique per channel and subject, so that of several API processes exactly
# one sends it. ``outcome`` is pending, sent, failed (retries exhausted) or rejected (a
# permanent error of the platform).
channel_delivery = Table(
    "channel_delivery",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("slot", TZ, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("period", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("detail", Text, nullable=True),
    Column("claimed_at", TZ, nullable=False),
    Column("finished_at", TZ, nullable=True),
    # Empty for a digest; ``contest:<id>:start|lead:<leaders>|result`` for a contest's news.
    Column("subject", Text, nullable=False, server_default=""),
    UniqueConstraint("channel", "slot", "subject", name="uq_channel_delivery_channel_slot_subject"),
)

# Contests (竞赛): agents of some teams, or teams against each other, ranked by one KPI over
# ``[starts_at, ends_at)``. The standings are never stored: they are read from the KPI
# tables as the leaderboard reads them. ``team_ids`` is comma-joined (team ids hold no
# comma); ``min_volume`` is the one in force when the contest was created.
contest = Table(
    "contest",
    metadata,
    Column("contest_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("kpi", String(64), nullable=False),
    Column("scope", String(8), nullable=False),
    Column("team_ids", Text, nullable=False),
    Column("starts_at", TZ, nullable=False),
    Column("ends_at", TZ, nullable=False),
    Column("min_volume", Integer, nullable=False),
    Column("ascending", Boolean, nullable=False),
    Column("prize", String(500), nullable=True),
    Column("created_at", TZ, nullable=False),
    Column("created_by", String(128), nullable=False),
)
Index("ix_contest_ends_at", contest.c.ends_at)
