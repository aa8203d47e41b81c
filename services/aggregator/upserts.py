"""The aggregator's bulk writes to PostgreSQL (and SQLite, for small deployments and tests).

Rows go in primary-key order, so concurrent writers lock rows in the same order; on
PostgreSQL through COPY into a staging table and one INSERT ... SELECT. Callers own the
transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from shared.kpis import COUNTER_KEYS
from shared.leadcounts import LEAD_FACTS, MARK_COLUMNS

CHUNK = 1000
_ADDITIVE = frozenset((*COUNTER_KEYS, *MARK_COLUMNS, *LEAD_FACTS, "calls"))


def insert_for(connection: Connection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def upsert(connection: Connection, table: Table, rows: list[dict[str, Any]], *, add: bool) -> None:
    """Insert rows; on a key already there, add the counters (``add``) or replace the row.

    Rows go in primary-key order, so concurrent writers lock rows in the same order.
    """
    if not rows:
        return
    pk = [c.name for c in table.primary_key.columns]
    rows.sort(key=values_of(pk))
    columns = list(rows[0])
    updated = [c for c in columns if c not in pk]
    if connection.dialect.name == "postgresql":
        _pg_copy_upsert(connection, table, rows, pk, columns, updated, add)
        return
    stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=pk,
        set_={
            c: table.c[c] + stmt.excluded[c] if add and c in _ADDITIVE else stmt.excluded[c]
            for c in updated
        },
    )
    connection.execute(stmt, rows)
    counters = [c for c in updated if c in _ADDITIVE]
    if add and counters:
        # A row whose counters all went back to zero (a call moved to another bucket, a
        # sale cancelled) holds nothing: remove it, so rows exist only where something counts.
        emptied = delete(table).where(
            *(table.c[k] == bindparam(f"pk_{k}") for k in pk),
            *(table.c[c] == 0 for c in counters),
        )
        connection.execute(emptied, [{f"pk_{k}": r[k] for k in pk} for r in rows])


def values_of(columns: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values of ``columns``, as a tuple (a bulk write calls this once per row)."""
    if len(columns) == 1:
        (only,) = columns
        return lambda row: (row[only],)
    return itemgetter(*columns)


def _pg_stage(
    connection: Connection, table: Table, rows: list[dict[str, Any]], columns: list[str]
) -> str:
    """COPY ``rows`` into the session's staging table for ``table``; returns its name.

    COPY and then one INSERT ... SELECT: far fewer round trips and far less client work than
    a statement per row. The caller empties the staging table when done with it.
    """
    staging = f"staging_{table.name}"
    connection.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
        f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    values = values_of(columns)
    with cursor, cursor.copy(f"COPY {staging} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(values(row))
    return staging


def _pg_copy_upsert(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    pk: list[str],
    columns: list[str],
    updated: list[str],
    add: bool,
) -> None:
    staging = _pg_stage(connection, table, rows, columns)
    names = ", ".join(columns)
    assignments = ", ".join(
        f"{c} = {table.name}.{c} + EXCLUDED.{c}"
        if add and c in _ADDITIVE
        else f"{c} = EXCLUDED.{c}"
        for c in updated
    )
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
        f"ORDER BY {', '.join(pk)} "
        f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET {assignments}"
    )
    counters = [c for c in updated if c in _ADDITIVE]
    if add and counters:
        # See upsert: rows whose counters all went back to zero are removed.
        matches = " AND ".join(f"t.{k} = s.{k}" for k in pk)
        zeros = " AND ".join(f"t.{c} = 0" for c in counters)
        connection.exec_driver_sql(
            f"DELETE FROM {table.name} AS t USING {staging} AS s WHERE {matches} AND {zeros}"
        )
    connection.exec_driver_sql(f"TRUNCATE {staging}")


def copy_insert(
    connection: Connection, table: Table, rows: list[dict[str, Any]], on_conflict: str
) -> None:
    """``rows`` (in primary-key order) staged, then one INSERT ... SELECT with
    ``ON CONFLICT (primary key) <on_conflict>``."""
    pk = ", ".join(c.name for c in table.primary_key.columns)
    columns = list(rows[0])
    names = ", ".join(columns)
    staging = _pg_stage(connection, table, rows, columns)
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
        f"ORDER BY {pk} ON CONFLICT ({pk}) {on_conflict}"
    )
    connection.exec_driver_sql(f"TRUNCATE {staging}")
