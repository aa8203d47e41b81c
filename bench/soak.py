"""Soak: a million events from concurrent dialers through faults, ending exact.

``make soak`` (``python -m bench.soak``) runs a stack of its own: a three-node Kafka cluster
(the events topic replicated to all three, two in sync to accept a write), PostgreSQL,
ingest, the read API and three aggregator members. Concurrent dialers post a floor in
batches, retrying 503s and lost answers with the same event ids, while a chaos loop
SIGKILLs aggregator members at random moments (each restarted at once, as a supervisor
would), SIGKILLs the node leading a partition of the events topic (restarted after),
restarts PostgreSQL and stops and starts members.

Then it compares what ingest acknowledged (distinct event ids of the batches answered 202)
with what the aggregator counted (distinct event ids of the records below the offsets the
database stores, without dead letters), and every KPI per agent, team and day from the read
API (but those tests.reference.NOT_COMPARED names) with the independent reference
(tests/reference.py) over the acknowledged events. It
prints the fault timeline with recovery times and each member's resident memory at the
start, middle and end, and ends with the line

    soak: <N> acknowledged, <N> counted, <L> lost, <D> doubled, <M> mismatches

lost: acknowledged, not counted; doubled: KPI values above the reference (what an event
counted twice leaves behind); mismatches: KPI values (and rows) that differ from the
reference. The exit status is 0 only when the run is exact.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import create_engine, text

# The local infrastructure: the one place this module names the development stack.
from devstack.cluster import KafkaCluster
from devstack.postgres import PostgresCluster
from devstack.processes import free_port
from services.aggregator.dead_letters import read_dead_letters
from services.aggregator.settings import AggregatorSettings
from shared.db import upgrade_database
from shared.kafka import kafka_consumer
from tests.faults import ZONE, Attempt, Dialer, check_exactly_once
from tests.floor import generate_floor
from tests.pipeline import Pipeline

# The floor: 200 agents in 10 teams over five working days, calls in any order.
TEAMS = 10
AGENTS_PER_TEAM = 20
DAYS = 5
FIRST_DAY = datetime(2026, 11, 16, 9, 0, tzinfo=ZONE)
# What tests.floor.generate_floor gives per call, repeats aside (measured: 3.71).
EVENTS_PER_CALL = 3.71

AGGREGATOR_KILLS = 10
LEADER_KILLS = 2
POSTGRES_RESTARTS = 2
# aggregator-a is never stopped, so that its memory is one process's from start to end; the
# other two are the ones killed, and each leaves the group once and joins it again.
STEADY_MEMBER = "aggregator-a"
MEMBERS = (STEADY_MEMBER, "aggregator-b", "aggregator-c")
MEMBERSHIP_CHANGES = (
    "leave aggregator-c",
    "join aggregator-c",
    "leave aggregator-b",
    "join aggregator-b",
)

# Every KPI compared per agent, team and day, and for the whole floor per day.
VIEWS = (((), "day"), (("agent",), "day"), (("team",), "day"))

PROGRESS_SECONDS = 30.0
SAMPLE_SECONDS = 0.5


def say(message: str) -> None:
    print(message, flush=True)


# The floor.


def soak_floor(events: int, seed: int) -> list[dict[str, Any]]:
    """Exactly ``events`` distinct events, shuffled, with the floor's own repeats of some.

    Floors of ``tests.floor.generate_floor`` (split and CDR-style calls, corrected codes,
    cancelled sales, repeats) over the working days, each agent's calls of a day in slices,
    the last slices narrower, until there are enough; the few events too many are trimmed
    by leaving out quotes (each an entity of its own, every copy of it), then surveys, so
    that the count is exact and every call and sale stays whole.
    """
    rng = random.Random(seed)
    floor: list[dict[str, Any]] = []
    distinct: set[str] = set()
    for chunk in itertools.count():
        missing = events - len(distinct)
        if missing <= 0:
            break
        # Most of what is missing in whole rounds of calls of every agent, then narrower.
        share = min(missing, events / DAYS) * 0.97
        calls = math.floor(share / (EVENTS_PER_CALL * TEAMS * AGENTS_PER_TEAM))
        agents = AGENTS_PER_TEAM
        if calls == 0:
            calls = 1
            agents = min(AGENTS_PER_TEAM, max(1, math.floor(missing / (EVENTS_PER_CALL * TEAMS))))
        generated = generate_floor(
            seed * 1000 + chunk,
            start=FIRST_DAY + timedelta(days=chunk % DAYS),
            hours=10,
            teams=TEAMS,
            agents_per_team=agents,
            calls_per_agent=calls,
            leads=max(400, calls * TEAMS * agents // 3),
        ).events
        floor.extend(generated)
        distinct.update(e["event_id"] for e in generated)
    surplus = len(distinct) - events
    left_out: set[str] = set()
    for kind in ("quote.given", "survey.completed"):
        candidates = sorted({e["event_id"] for e in floor if e["type"] == kind})
        take = min(surplus - len(left_out), len(candidates))
        left_out.update(rng.sample(candidates, take))
    if len(left_out) != surplus:
        raise RuntimeError(f"cannot trim {surplus} events from a floor of {len(distinct)}")
    floor = [e for e in floor if e["event_id"] not in left_out]
    rng.shuffle(floor)
    return floor


def acknowledged_events(dialers: Iterable[Dialer]) -> dict[str, dict[str, Any]]:
    """The events the dialers got a 202 for, once each: a repeat or a retry is one event."""
    merged: dict[str, dict[str, Any]] = {}
    for dialer in dialers:
        merged.update(dialer.acknowledged)
    return merged


# The chaos plan and recovery times.


def chaos_plan(rng: random.Random) -> list[str]:
    """The faults in the order the chaos loop injects them: the kills and restarts shuffled,
    the membership changes among them at random places but in their own order."""
    faults = (
        ["kill aggregator"] * AGGREGATOR_KILLS
        + ["kill leader"] * LEADER_KILLS
        + ["restart postgres"] * POSTGRES_RESTARTS
    )
    rng.shuffle(faults)
    total = len(faults) + len(MEMBERSHIP_CHANGES)
    places = set(rng.sample(range(total), len(MEMBERSHIP_CHANGES)))
    kills, changes = iter(faults), iter(MEMBERSHIP_CHANGES)
    return [next(changes) if n in places else next(kills) for n in range(total)]


def fault_moments(rng: random.Random, count: int, start: float, end: float) -> list[float]:
    """``count`` random moments in order, inside the stream from ``start`` to ``end`` as
    paced: from 5 % of it to 75 %, since a loaded machine stretches the stream and the
    faults take time of their own."""
    span = end - start
    return sorted(rng.uniform(start + 0.05 * span, start + 0.75 * span) for _ in range(count))


@dataclass(frozen=True)
class Sample:
    """End offsets of the events topic and the offsets the database stores, at ``at``."""

    at: float
    ends: dict[int, int]
    applied: dict[int, int]

    @property
    def lag(self) -> int:
        return sum(max(0, o - self.applied.get(p, 0)) for p, o in self.ends.items())


def _as_of(samples: Sequence[Sample], moment: float) -> tuple[Sample | None, list[Sample]]:
    """The last sample taken by ``moment``, and the samples after it."""
    before = [s for s in samples if s.at <= moment]
    after = [s for s in samples if s.at > moment]
    return (before[-1] if before else None), after


def applying_again(samples: Sequence[Sample], moment: float) -> float | None:
    """Seconds from ``moment`` until every partition holding records past what it had
    applied at ``moment`` has applied more of them (``None``: not within the samples)."""
    base, after = _as_of(samples, moment)
    if base is None:
        return None
    for sample in after:
        if all(
            sample.applied.get(p, 0) > base.applied.get(p, 0) or end <= base.applied.get(p, 0)
            for p, end in sample.ends.items()
        ):
            return sample.at - moment
    return None


def caught_up(samples: Sequence[Sample], moment: float) -> float | None:
    """Seconds from ``moment`` until everything in the topic at ``moment`` is applied."""
    base, after = _as_of(samples, moment)
    if base is None:
        return None
    for sample in after:
        if all(sample.applied.get(p, 0) >= end for p, end in base.ends.items()):
            return sample.at - moment
    return None


def longest_wait_for_202(attempts: Iterable[Attempt], start: float, end: float) -> float:
    """The longest stretch of ``[start, end]`` in which no request got a 202."""
    answered = sorted(a.ended for a in attempts if a.status == 202 and start < a.ended < end)
    moments = [start, *answered, end]
    return max(b - a for a, b in itertools.pairwise(moments))


def summary_line(acknowledged: int, counted: int, lost: int, double: int, mismatches: int) -> str:
    return (
        f"soak: {acknowledged} acknowledged, {counted} counted, {lost} lost, "
        f"{double} doubled, {mismatches} mismatches"
    )


def rss_mib(pid: int) -> float | None:
    """The resident memory of ``pid`` in MiB, from /proc (``None`` once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


# The run.


@dataclass
class Fault:
    """One fault of the timeline: injected at ``at``; what it took away back at ``back``;
    recovery measured from ``since``."""

    what: str
    at: float
    back: float
    since: float
    notes: list[str] = field(default_factory=list)


@dataclass
class MemoryMark:
    label: str
    applied: int
    rss: dict[str, tuple[int, float | None]]


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.kafka = KafkaCluster(workdir / "kafka", num_partitions=args.partitions)
        self.postgres = PostgresCluster(workdir / "postgres", port=free_port(), durable=False)
        self.topic = f"soak-{uuid.uuid4().hex[:8]}"
        self.pipeline: Pipeline | None = None
        self.members_lock = threading.Lock()
        self.away: set[str] = set()  # members that left the group and have not joined again
        self.restarts = dict.fromkeys(MEMBERS, 0)
        self.faults: list[Fault] = []
        self.samples: list[Sample] = []
        self.marks: list[MemoryMark] = []
        self.dialers: list[Dialer] = []
        self.postings = 0
        self.started = time.monotonic()
        self.stream_end = self.started
        self.posted = self.started
        self.chaos_error: str | None = None
        self.chaos_done = threading.Event()
        self.finished = threading.Event()

    # Infrastructure and services.

    def start_stack(self) -> Pipeline:
        say(f"starting a three-node Kafka cluster and PostgreSQL in {self.workdir}")
        self.kafka.start(timeout=300)
        self.postgres.start()
        upgrade_database(self.postgres.url)
        pipeline = Pipeline(
            bootstrap_servers=self.kafka.bootstrap_servers,
            database_url=self.postgres.url,
            topic=self.topic,
            workdir=self.workdir,
            extra_env={"CALLBOARD_EVENTS_PARTITIONS": str(self.args.partitions)},
        )
        pipeline.__enter__()
        self.pipeline = pipeline
        pipeline.stop("aggregator")
        for name in MEMBERS:
            pipeline.start_aggregator(name)
        nodes = ", ".join(f"node {n.node_id} :{n.port}" for n in self.kafka.nodes)
        say(
            f"stack up: kafka {nodes}; postgres :{self.postgres.port}; ingest :"
            f"{pipeline.ingest_port}; api :{pipeline.api_port}; members {', '.join(MEMBERS)}; "
            f"topic {self.topic} ({self.args.partitions} partitions, 3 replicas)"
        )
        return pipeline

    def stop_stack(self) -> None:
        if self.pipeline is not None:
            self.pipeline.__exit__(None, None, None)
        self.kafka.stop()
        self.postgres.stop()

    @property
    def running(self) -> Pipeline:
        assert self.pipeline is not None
        return self.pipeline

    def member_pid(self, name: str) -> int | None:
        process = self.running.processes.get(name)
        return None if process is None else process.pid

    # Watching: samples, progress, memory marks, members that exit on their own.

    def watch(self) -> None:
        consumer: KafkaConsumer | None = None
        engine = create_engine(self.postgres.url, pool_pre_ping=True)
        next_progress = time.monotonic() + PROGRESS_SECONDS
        try:
            while not self.finished.is_set():
                try:
                    if consumer is None:
                        consumer = kafka_consumer(
                            bootstrap=self.kafka.bootstrap_servers, request_timeout_ms=10_000
                        )
                    tps = [TopicPartition(self.topic, p) for p in range(self.args.partitions)]
                    ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
                    with engine.connect() as connection:
                        rows = connection.execute(
                            text(
                                "SELECT partition, next_offset FROM consumer_offset "
                                "WHERE topic = :t"
                            ),
                            {"t": self.topic},
                        )
                        applied = {r.partition: r.next_offset for r in rows}
                    self.samples.append(Sample(time.monotonic(), ends, applied))
                except Exception:
                    # A node or the database is down: no sample this time, a fresh client next.
                    if consumer is not None:
                        consumer.close()
                        consumer = None
                self._restart_exited_members()
                self._mark_memory()
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_SECONDS
                    say(self.progress())
                self.finished.wait(SAMPLE_SECONDS)
        finally:
            if consumer is not None:
                consumer.close()
            engine.dispose()

    def _restart_exited_members(self) -> None:
        with self.members_lock:
            for name in MEMBERS:
                process = self.running.processes.get(name)
                if name in self.away or process is None or process.poll() is None:
                    continue
                at = time.monotonic()
                code = self.running.stop(name)
                last_words = self.running.log(name).strip().splitlines()[-1:] or ["(no log)"]
                self.running.start_aggregator(name)
                self.restarts[name] += 1
                self.faults.append(
                    Fault(
                        f"{name} exited by itself (status {code}); restarted",
                        at,
                        at,
                        at,
                        [f"its last log line: {last_words[0][:400]}"],
                    )
                )

    def applied_records(self) -> int:
        return sum(self.samples[-1].applied.values()) if self.samples else 0

    def _mark_memory(self) -> None:
        # At 5 % of the postings applied (past the first batches), at half, and at the end.
        due = (("start", 0.05), ("middle", 0.5))
        if len(self.marks) < len(due):
            label, share = due[len(self.marks)]
            if self.applied_records() >= share * self.postings:
                self.mark_memory(label)

    def mark_memory(self, label: str, applied: int | None = None) -> None:
        with self.members_lock:
            pids = {name: self.member_pid(name) for name in MEMBERS}
        self.marks.append(
            MemoryMark(
                label,
                self.applied_records() if applied is None else applied,
                {name: (pid or 0, rss_mib(pid) if pid else None) for name, pid in pids.items()},
            )
        )

    def progress(self) -> str:
        acknowledged = len(acknowledged_events(self.dialers))
        last = self.samples[-1] if self.samples else Sample(0, {}, {})
        with self.members_lock:
            rss = " ".join(
                f"{name[-1]}={mib:.0f}" if (mib := rss_mib(pid or 0)) else f"{name[-1]}=-"
                for name, pid in ((n, self.member_pid(n)) for n in MEMBERS)
            )
        return (
            f"[{time.monotonic() - self.started:6.0f} s] acknowledged {acknowledged:,} of "
            f"{self.args.events:,}; topic {sum(last.ends.values()):,} records, applied "
            f"{sum(last.applied.values()):,} (lag {last.lag:,}); faults {len(self.faults)}; "
            f"RSS MiB {rss}"
        )

    # Chaos.

    def chaos(self) -> None:
        plan = chaos_plan(self.rng)
        moments = fault_moments(self.rng, len(plan), self.started, self.stream_end)
        say("chaos plan: " + ", ".join(plan))
        try:
            for fault, moment in zip(plan, moments, strict=True):
                # A fault and its recovery may outlast the gap to the next moment: then the
                # next one follows at once.
                time.sleep(max(0.0, moment - time.monotonic()))
                action, _, name = fault.partition(" ")
                if action == "kill" and name == "aggregator":
                    self.kill_member()
                elif action == "kill":
                    self.kill_leader()
                elif action == "restart":
                    self.restart_postgres()
                else:
                    self.change_membership(action, name)
                self.wait_recovered(self.faults[-1].since)
        except Exception as exc:
            self.chaos_error = f"the chaos loop stopped: {exc!r}"
            say(self.chaos_error)
        finally:
            self.chaos_done.set()
        # The members this thread started get SIGTERM when it ends (tests.pipeline starts
        # them with PR_SET_PDEATHSIG, which follows the starting thread): it ends last.
        self.finished.wait()

    def kill_member(self) -> None:
        with self.members_lock:
            name = self.rng.choice(sorted(set(MEMBERS) - self.away - {STEADY_MEMBER}))
            pid = self.member_pid(name)
            at = time.monotonic()
            self.running.stop(name, kill=True)
            self.running.start_aggregator(name)
            self.restarts[name] += 1
            back = time.monotonic()
        self.faults.append(Fault(f"SIGKILL {name} (pid {pid}); restarted", at, back, at))

    def kill_leader(self) -> None:
        partition = self.rng.randrange(self.args.partitions)
        node = self.kafka.leader_of(self.topic, partition)
        at = time.monotonic()
        self.kafka.kill(node)
        killed = time.monotonic()
        time.sleep(self.rng.uniform(5, 15))
        self.kafka.restart(node, timeout=180)
        back = time.monotonic()
        self.kafka.wait_healthy(timeout=300)
        healthy = time.monotonic()
        fault = Fault(
            f"SIGKILL Kafka node {node} (leader of partition {partition}); restarted",
            at,
            back,
            at,
            [
                f"down {back - at:.1f} s (kill took {killed - at:.1f} s); every partition "
                f"fully replicated again {healthy - back:.1f} s after the restart"
            ],
        )
        self.faults.append(fault)

    def restart_postgres(self) -> None:
        at = time.monotonic()
        self.postgres.stop()
        time.sleep(self.rng.uniform(3, 10))
        self.postgres.start()
        back = time.monotonic()
        self.faults.append(Fault("PostgreSQL stopped (fast shutdown) and started", at, back, back))

    def change_membership(self, action: str, name: str) -> None:
        with self.members_lock:
            at = time.monotonic()
            if action == "leave":
                self.running.stop(name)
                self.away.add(name)
            else:
                self.running.start_aggregator(name)
                self.away.discard(name)
                self.restarts[name] += 1
        what = "leaves the group (SIGTERM)" if action == "leave" else "joins the group"
        self.faults.append(Fault(f"{name} {what}", at, at, at))

    def wait_recovered(self, since: float, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if applying_again(self.samples, since) is not None:
                return
            time.sleep(SAMPLE_SECONDS)
        self.faults[-1].notes.append(f"not applying again within {timeout:.0f} s")

    # The stream and the check.

    def run(self) -> bool:
        args = self.args
        generating = time.monotonic()
        floor = soak_floor(args.events, args.seed)
        self.postings = len(floor)
        say(
            f"floor: {args.events:,} distinct events ({len(floor):,} postings with the floor's "
            f"own repeats), {TEAMS * AGENTS_PER_TEAM} agents in {TEAMS} teams, {DAYS} days; "
            f"generated in {time.monotonic() - generating:.1f} s"
        )
        pipeline = self.start_stack()
        url = f"http://127.0.0.1:{pipeline.ingest_port}"
        share = math.ceil(len(floor) / args.dialers)
        self.dialers = [
            Dialer(url, floor[i : i + share], batch=args.batch, seconds=args.minutes * 60)
            for i in range(0, len(floor), share)
        ]
        del floor
        watcher = threading.Thread(target=self.watch, name="watch", daemon=True)
        chaos = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        self.started = time.monotonic()
        self.stream_end = self.started + args.minutes * 60
        say(
            f"streaming: {len(self.dialers)} dialers, batches of {args.batch}, paced over "
            f"{args.minutes:g} min; progress every {PROGRESS_SECONDS:.0f} s"
        )
        watcher.start()
        for dialer in self.dialers:
            dialer.start()
        chaos.start()
        for dialer in self.dialers:
            dialer.join()
        self.posted = posted = time.monotonic()
        say(f"dialers done in {posted - self.started:.0f} s; waiting for the chaos loop")
        self.chaos_done.wait()
        with self.members_lock:
            for name in sorted(self.away):
                pipeline.start_aggregator(name)
            self.away.clear()
        drained_in: float | None = None
        try:
            drained_in = pipeline.wait_caught_up(timeout=args.drain_minutes * 60)
        except AssertionError as exc:
            say(f"NOT DRAINED: {str(exc)[:2000]}")
        self.mark_memory("end", sum(pipeline.applied_offsets().values()))
        try:
            return self.check(posted, drained_in)
        finally:
            # The watcher and the chaos thread end, and with them the members they started.
            self.finished.set()
            watcher.join(timeout=30)
            chaos.join(timeout=30)

    def check(self, posted: float, drained_in: float | None) -> bool:
        pipeline = self.running
        checking = time.monotonic()
        acknowledged = acknowledged_events(self.dialers)
        failures = [f for d in self.dialers for f in d.failures]
        settings = AggregatorSettings(
            kafka_bootstrap_servers=self.kafka.bootstrap_servers,
            events_topic=self.topic,
            group_id=pipeline.group_id,
        )
        dead = {
            (letter.source_partition, letter.source_offset)
            for letter in read_dead_letters(settings)
            if letter.source_topic == self.topic
            and letter.source_partition is not None
            and letter.source_offset is not None
        }
        check = check_exactly_once(pipeline, acknowledged, dead, VIEWS)
        # Its mismatches list the ids lost and the ids counted but never acknowledged too.
        unacknowledged = check.counted - (len(acknowledged) - check.lost)
        mismatches = check.failures - check.lost - unacknowledged
        checked_in = time.monotonic() - checking

        attempts = [a for d in self.dialers for a in d.attempts]
        statuses: dict[int, int] = {}
        for attempt in attempts:
            statuses[attempt.status] = statuses.get(attempt.status, 0) + 1
        say("")
        say("== soak report")
        say(
            f"floor: {self.args.events:,} distinct events, {self.postings:,} postings; "
            f"{len(self.dialers)} dialers, batches of {self.args.batch}"
        )
        say(
            f"requests: {len(attempts):,} ("
            + ", ".join(
                f"{n:,} {'without an answer' if s == 0 else f'answered {s}'}"
                for s, n in sorted(statuses.items())
            )
            + f"); dialer failures: {len(failures)}"
        )
        for failure in failures[:10]:
            say(f"  {failure}")
        say(
            f"stream {posted - self.started:.0f} s; backlog drained "
            + (f"{drained_in:.0f} s" if drained_in is not None else "NOT")
            + f" after the chaos loop ended; check {checked_in:.0f} s; "
            f"total {time.monotonic() - self.started:.0f} s since the stream began"
        )
        say(
            f"topic: {check.records:,} records (retries and repeats included), "
            f"{len(dead)} dead letters; counted {check.counted:,} distinct events, "
            f"{unacknowledged} of them never acknowledged"
        )
        say(f"KPI cells compared with the reference: {check.checked:,} ({self._views()})")
        for mismatch in check.mismatches[:20]:
            say(f"  {mismatch}")
        self.report_faults(attempts)
        if self.chaos_error:
            say(self.chaos_error)
        self.report_memory()
        say(summary_line(len(acknowledged), check.counted, check.lost, check.doubled, mismatches))
        return (
            check.lost == check.doubled == mismatches == unacknowledged == 0
            and not failures
            and drained_in is not None
            and len(acknowledged) == self.args.events
            and self.chaos_error is None
        )

    def _views(self) -> str:
        return ", ".join(f"{','.join(g) or 'floor'} by {granularity}" for g, granularity in VIEWS)

    def report_faults(self, attempts: list[Attempt]) -> None:
        say("")
        say(
            f"fault timeline ({len(self.faults)} faults; seconds since the stream began; "
            "applying: every partition with records waiting applies again; caught up: "
            "everything in the topic at the fault is applied)"
        )
        table: list[tuple[str, str, str, str]] = []
        for fault in sorted(self.faults, key=lambda f: f.at):
            resumed = applying_again(self.samples, fault.since)
            level = caught_up(self.samples, fault.since)
            notes = list(fault.notes)
            # How ingest fared, while the dialers were posting.
            until = min(fault.back + 30, self.posted)
            if _family(fault.what) == "partition-leader SIGKILL" and fault.at < until:
                wait = longest_wait_for_202(attempts, fault.at, until)
                refused = sum(
                    1 for a in attempts if fault.at <= a.ended <= until and a.status != 202
                )
                notes.append(
                    f"ingest: {refused} requests not answered 202, longest wait for a 202 "
                    f"{wait:.1f} s"
                )
            table.append(
                (
                    f"{fault.at - self.started:7.1f}",
                    _seconds(resumed),
                    _seconds(level),
                    fault.what + "".join(f"; {n}" for n in notes),
                )
            )
        say(f"{'t (s)':>7}  {'applying':>9}  {'caught up':>9}  fault")
        for at, resumed_text, level_text, what in table:
            say(f"{at}  {resumed_text:>9}  {level_text:>9}  {what}")
        say(
            "faults injected: "
            + ", ".join(f"{n} × {k}" for k, n in _counts(_family(f.what) for f in self.faults))
        )

    def report_memory(self) -> None:
        say("")
        say("aggregator memory (VmRSS, MiB) at the start, middle and end of the run:")
        header = "  ".join(f"{m.label} ({m.applied:,} applied)" for m in self.marks)
        say(f"  {'member':<14}  {header}")
        for name in MEMBERS:
            values = []
            for mark in self.marks:
                pid, mib = mark.rss[name]
                values.append(f"{mib:.1f} (pid {pid})" if mib is not None else "-")
            restarted = self.restarts[name]
            note = "one process throughout" if restarted == 0 else f"{restarted} restarts"
            say(f"  {name:<14}  {'  '.join(values)}  [{note}]")


def _family(what: str) -> str:
    if what.startswith("SIGKILL aggregator"):
        return "aggregator SIGKILL"
    if what.startswith("SIGKILL Kafka"):
        return "partition-leader SIGKILL"
    if what.startswith("PostgreSQL"):
        return "PostgreSQL restart"
    if "exited by itself" in what:
        return "member exited by itself"
    return "membership change"


def _counts(values: Iterable[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return list(counts.items())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="distinct events")
    parser.add_argument("--minutes", type=float, default=22, help="how long the dialers post")
    parser.add_argument("--dialers", type=int, default=12, help="concurrent dialers")
    parser.add_argument("--batch", type=int, default=200, help="events per ingest request")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--drain-minutes", type=float, default=40, help="time allowed for the backlog at the end"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="callboard-soak-"))
    os.chmod(workdir, 0o755)
    say(f"soak: {args.events:,} events, {os.cpu_count()} cores")
    soak = Soak(args, workdir)
    exact = False
    try:
        exact = soak.run()
    finally:
        soak.stop_stack()
        if exact:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"logs kept in {workdir}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
