"""The aggregator's bulk writes to PostgreSQL (and SQLite, for small deployments and tests).

Rows go in primary-key order, so concurrent writers lock rows in the same order; on
PostgreSQL through COPY into a staging table and one INSERT ... SELECT. Callers own the
transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    SmallInteger,
    String,
    Table,
    bindparam,
    delete,
    event,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeEngine

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
    if rows:
        columns = list(rows[0])
        upsert_values(connection, table, columns, list(map(values_of(columns), rows)), add=add)


def upsert_values(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    *,
    add: bool,
) -> None:
    """:func:`upsert` of rows given as tuples of ``columns`` (one key per row)."""
    if not rows:
        return
    columns = list(columns)
    pk = [c.name for c in table.primary_key.columns]
    if columns[: len(pk)] == pk:
        rows.sort()  # the keys lead and differ: the tuples sort by them
    else:
        rows.sort(key=itemgetter(*(columns.index(k) for k in pk)))
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
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    connection.execute(stmt, records)
    counters = [c for c in updated if c in _ADDITIVE]
    if add and counters:
        # A row whose counters all went back to zero (a call moved to another bucket, a
        # sale cancelled) holds nothing: remove it, so rows exist only where something counts.
        emptied = delete(table).where(
            *(table.c[k] == bindparam(f"pk_{k}") for k in pk),
            *(table.c[c] == 0 for c in counters),
        )
        connection.execute(emptied, [{f"pk_{k}": r[k] for k in pk} for r in records])


def values_of(columns: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values of ``columns``, as a tuple (a bulk write calls this once per row)."""
    if len(columns) == 1:
        (only,) = columns
        return lambda row: (row[only],)
    return itemgetter(*columns)


def _pg_stage(
    connection: Connection, table: Table, rows: list[tuple[Any, ...]], columns: list[str]
) -> str:
    """COPY ``rows`` into the session's staging table for ``table``; returns its name.

    COPY and then one INSERT ... SELECT: far fewer round trips and far less client work than
    a statement per row. A staging table empties itself at the end of the transaction (ON
    COMMIT DELETE ROWS, or the rollback); one staged again in the same transaction is
    emptied first.
    """
    staging = f"staging_{table.name}"
    known = _staging_tables(connection)
    if staging in known.used:
        connection.exec_driver_sql(f"TRUNCATE {staging}")
    elif staging not in known.created:
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
            f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        known.created.add(staging)
    known.used.add(staging)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(columns)
    with cursor, cursor.copy(f"COPY {staging} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        # Binary: a third of the client's work of writing each row as text.
        copy.set_types(_copy_types(table, tuple(columns)))
        for row in rows:
            copy.write_row(row)
    return staging


@lru_cache(maxsize=256)
def _copy_types(table: Table, columns: tuple[str, ...]) -> list[str]:
    """The PostgreSQL type of each of ``table``'s ``columns``, for a binary COPY."""
    return [_pg_type(table.c[name].type) for name in columns]


def _pg_type(column_type: TypeEngine[Any]) -> str:
    # Subclasses before their bases: BigInteger is an Integer, Text a String.
    for python_type, name in (
        (BigInteger, "int8"),
        (SmallInteger, "int2"),
        (Integer, "int4"),
        (Boolean, "bool"),
        (Date, "date"),
        (String, "text"),
    ):
        if isinstance(column_type, python_type):
            return name
    if isinstance(column_type, DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    raise TypeError(f"no binary COPY type for {column_type!r}")


@dataclass
class _Staging:
    """A database session's staging tables: those it created (they last as long as it
    does, unless their transaction rolls back) and those the open transaction filled."""

    created: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)


def _staging_tables(connection: Connection) -> _Staging:
    known = connection.info.get("staging")
    if known is None:
        known = connection.info["staging"] = _Staging()
    return cast(_Staging, known)


def _forget(connection: Connection, *, filled: bool, made: bool) -> None:
    """Forget which staging tables the transaction filled, or which the session made."""
    if connection.closed or connection.invalidated:
        return  # the session is gone; its replacement starts with nothing known
    known = connection.info.get("staging")
    if known is not None:
        if filled:
            known.used.clear()
        if made:
            known.created.clear()


@event.listens_for(Engine, "commit")
def _committed(connection: Connection) -> None:
    _forget(connection, filled=True, made=False)  # ON COMMIT DELETE ROWS emptied them


@event.listens_for(Engine, "rollback")
def _rolled_back(connection: Connection) -> None:
    # What the transaction made or filled is gone with it.
    _forget(connection, filled=True, made=True)


@event.listens_for(Engine, "rollback_savepoint")
def _rolled_back_to_savepoint(connection: Connection, _name: Any, _context: Any) -> None:
    # A table made after the savepoint is gone; rows staged before it are still there.
    _forget(connection, filled=False, made=True)


def _pg_copy_upsert(
    connection: Connection,
    table: Table,
    rows: list[tuple[Any, ...]],
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
    insert = (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
        f"ORDER BY {', '.join(pk)} "
        f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET {assignments}"
    )
    counters = [c for c in updated if c in _ADDITIVE]
    if not (add and counters):
        connection.exec_driver_sql(insert)
        return
    # See upsert: rows whose counters all went back to zero are removed. The insert names
    # them (rarely any), so that only those are looked up again.
    zeros = " AND ".join(f"{c} = 0" for c in counters)
    emptied = connection.exec_driver_sql(
        f"WITH written AS ({insert} RETURNING {', '.join(pk)}, {zeros} AS emptied) "
        f"SELECT {', '.join(pk)} FROM written WHERE emptied"
    ).all()
    if emptied:
        key = tuple_(*(table.c[k] for k in pk))
        for chunk in chunks(emptied):
            connection.execute(
                delete(table).where(
                    key.in_([tuple(r) for r in chunk]), *(table.c[c] == 0 for c in counters)
                )
            )


def copy_insert(
    connection: Connection, table: Table, rows: list[dict[str, Any]], on_conflict: str
) -> None:
    """``rows`` (in primary-key order) staged, then one INSERT ... SELECT with
    ``ON CONFLICT (primary key) <on_conflict>``."""
    pk = ", ".join(c.name for c in table.primary_key.columns)
    columns = list(rows[0])
    names = ", ".join(columns)
    staging = _pg_stage(connection, table, list(map(values_of(columns), rows)), columns)
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
        f"ORDER BY {pk} ON CONFLICT ({pk}) {on_conflict}"
    )
