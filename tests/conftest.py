"""Fixtures: a migrated database per test, a topic per test, the services as processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.db import upgrade_database
from shared.kafka import ensure_topic
from tests.chat_receivers import ChatReceivers
from tests.pipeline import MakePipeline, Pipeline, StartFloor

pytest_plugins = ["tests.fixtures_infra", "tests.fault_report"]

# The folder a test lives in says what it needs, and sets its marker:
#   unit/         nothing outside the process (no broker, no database);
#   integration/  the real broker or database, driven in this process;
#   e2e/          the services as processes (ingest, aggregator, API), the browser, faults.
LAYERS = ("unit", "integration", "e2e")
# Fixtures that reach the broker or the database, refused in unit/.
_INFRASTRUCTURE = {"kafka_bootstrap_servers", "postgres_url", "migrated_template", "database_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layer = item.path.parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(getattr(pytest.mark, layer))
        needs = _INFRASTRUCTURE.intersection(getattr(item, "fixturenames", ()))
        if layer == "unit" and needs:
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(needs))}: move it to tests/integration/"
            )


# One template per test run, so that runs sharing a database server do not drop each
# other's template.
TEMPLATE = f"callboard_template_{uuid.uuid4().hex[:8]}"


def _admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def migrated_template(postgres_url: str) -> Iterator[str]:
    """A database migrated once per session, copied for each test."""
    admin = create_engine(_admin_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    admin.dispose()
    url = make_url(postgres_url).set(database=TEMPLATE).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def cloned_database(migrated_template: str) -> Iterator[str]:
    """A fresh copy of the migrated template, dropped afterwards."""
    name = f"cb_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_admin_url(migrated_template), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    try:
        yield make_url(migrated_template).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_topic(bootstrap_servers: str, partitions: int = 3) -> str:
    """An events topic of its own."""
    name = f"events-{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap_servers.split(","), name, partitions)
    return name


@contextmanager
def own_pipeline(
    kafka_bootstrap_servers: str,
    migrated_template: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Pipeline]:
    """A pipeline on a database and an events topic of its own (a module's floor)."""
    with (
        cloned_database(migrated_template) as url,
        Pipeline(
            bootstrap_servers=kafka_bootstrap_servers,
            database_url=url,
            topic=new_topic(kafka_bootstrap_servers),
            workdir=workdir,
            extra_env=extra_env,
        ) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def start_floor(
    kafka_bootstrap_servers: str,
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> StartFloor:
    """Start a module's own pipeline (``own_pipeline``) with extra settings, in a folder
    named for it."""

    def start(name: str, **extra_env: str) -> AbstractContextManager[Pipeline]:
        return own_pipeline(
            kafka_bootstrap_servers,
            migrated_template,
            tmp_path_factory.mktemp(name),
            extra_env=extra_env,
        )

    return start


@pytest.fixture(scope="module")
def receivers() -> Iterator[ChatReceivers]:
    """The chat services' webhooks, recording what a module's channels post."""
    with ChatReceivers() as running:
        yield running


@pytest.fixture
def database_url(migrated_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of this test's own."""
    with cloned_database(migrated_template) as url:
        yield url


@pytest.fixture
def topic(kafka_bootstrap_servers: str) -> str:
    """An events topic of this test's own, with three partitions."""
    return new_topic(kafka_bootstrap_servers)


@pytest.fixture
def pipeline(make_pipeline: MakePipeline) -> Pipeline:
    """Ingest, aggregator and API as separate processes on the real broker and database."""
    return make_pipeline()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_pipeline(
    request: pytest.FixtureRequest,
    kafka_bootstrap_servers: str,
    topic: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """The pipeline on PostgreSQL, and again on the SQLite file of ``make demo``."""
    workdir = tmp_path_factory.mktemp("pipeline")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'callboard.db'}"
        upgrade_database(url)
    else:
        url = request.getfixturevalue("database_url")
    with Pipeline(
        bootstrap_servers=kafka_bootstrap_servers, database_url=url, topic=topic, workdir=workdir
    ) as running:
        yield running


@pytest.fixture
def make_pipeline(
    kafka_bootstrap_servers: str,
    database_url: str,
    topic: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MakePipeline]:
    """Start the pipeline with extra settings (e.g. another time zone); stopped at the end."""
    with ExitStack() as stack:

        def make(**extra_env: str) -> Pipeline:
            return stack.enter_context(
                Pipeline(
                    bootstrap_servers=kafka_bootstrap_servers,
                    database_url=database_url,
                    topic=topic,
                    workdir=tmp_path_factory.mktemp("pipeline"),
                    extra_env=extra_env,
                )
            )

        yield make
