"""Dialect-specific upserts with SQLAlchemy Core.

* MySQL/MariaDB: ``INSERT … ON DUPLICATE KEY UPDATE``;
* PostgreSQL: ``INSERT … ON CONFLICT (key) DO UPDATE``;
* SQL Server and Oracle: ``MERGE`` — SQLAlchemy has no MERGE construct, so :class:`Merge` is a small
  ``ClauseElement`` compiled per dialect (``MERGE INTO t WITH (HOLDLOCK) … USING (VALUES …)`` on SQL Server,
  ``MERGE INTO t USING (SELECT … FROM dual) …`` on Oracle). Every value is a bound parameter; executed with
  ``executemany`` (pyodbc ``fast_executemany``, python-oracledb array binds).
"""
from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable


class Merge(Executable, ClauseElement):
    """``MERGE`` one row (from bound parameters named after the columns) into ``table`` on ``keys``.

    ``update`` columns are set when the key exists; all ``columns`` are inserted when it does not.
    """

    inherit_cache = False
    _execution_options = Executable._execution_options.union({"autocommit": True})

    def __init__(self, table: sa.Table, columns: Sequence[str], keys: Sequence[str], update: Sequence[str]) -> None:
        self.table = table
        self.columns = list(columns)
        self.keys = list(keys)
        self.update = [c for c in update if c not in self.keys]


def _parts(element: Merge, compiler: Any, **kw: Any) -> dict[str, Any]:
    prep = compiler.preparer
    q = prep.quote
    binds = {c: compiler.process(sa.bindparam(c, type_=element.table.c[c].type), **kw) for c in element.columns}
    return {"q": q, "binds": binds, "table": prep.format_table(element.table)}


def _merge_body(element: Merge, p: dict[str, Any], on_parens: bool) -> str:
    q = p["q"]
    on = " AND ".join(f"tgt.{q(k)} = src.{q(k)}" for k in element.keys)
    sets = [f"tgt.{q(c)} = src.{q(c)}" for c in element.update]
    ins_cols = [q(c) for c in element.columns]
    ins_vals = [f"src.{q(c)}" for c in element.columns]
    sql = f" ON ({on})" if on_parens else f" ON {on}"
    if sets:
        sql += " WHEN MATCHED THEN UPDATE SET " + ", ".join(sets)
    sql += f" WHEN NOT MATCHED THEN INSERT ({', '.join(ins_cols)}) VALUES ({', '.join(ins_vals)})"
    return sql


@compiles(Merge)
def _merge_default(element: Merge, compiler: Any, **kw: Any) -> str:
    """SQL:2003 MERGE (PostgreSQL 15+, DB2, …)."""
    p = _parts(element, compiler, **kw)
    q = p["q"]
    cols = ", ".join(q(c) for c in element.columns)
    vals = ", ".join(p["binds"][c] for c in element.columns)
    return (f"MERGE INTO {p['table']} AS tgt USING (VALUES ({vals})) AS src ({cols})"
            + _merge_body(element, p, on_parens=False))


@compiles(Merge, "mssql")
def _merge_mssql(element: Merge, compiler: Any, **kw: Any) -> str:
    """SQL Server: HOLDLOCK makes the match-then-insert atomic under concurrency; MERGE needs the ``;``."""
    p = _parts(element, compiler, **kw)
    q = p["q"]
    cols = ", ".join(q(c) for c in element.columns)
    vals = ", ".join(p["binds"][c] for c in element.columns)
    return (f"MERGE INTO {p['table']} WITH (HOLDLOCK) AS tgt USING (VALUES ({vals})) AS src ({cols})"
            + _merge_body(element, p, on_parens=False) + ";")


@compiles(Merge, "oracle")
def _merge_oracle(element: Merge, compiler: Any, **kw: Any) -> str:
    """Oracle: the source row is ``SELECT :a AS a, … FROM dual``; the ON clause needs parentheses and key
    columns may not be updated (ORA-38104), which :class:`Merge` already guarantees."""
    p = _parts(element, compiler, **kw)
    q = p["q"]
    sel = ", ".join(f"{p['binds'][c]} AS {q(c)}" for c in element.columns)
    return f"MERGE INTO {p['table']} tgt USING (SELECT {sel} FROM dual) src" + _merge_body(element, p, on_parens=True)


def upsert(dialect_name: str, table: sa.Table, columns: Sequence[str], keys: Sequence[str],
           update: Sequence[str]) -> ClauseElement:
    """The upsert statement for ``dialect_name``; execute it with a list of row dicts keyed by column (constant
    columns such as ``status = 'NEW'`` are passed in every row, so mysqlclient can batch the rows into one
    multi-row INSERT)."""
    update = [c for c in update if c not in keys]
    if dialect_name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table).values({c: sa.bindparam(c) for c in columns})
        sets: dict[str, Any] = {c: stmt.inserted[c] for c in update}
        if not sets:  # nothing to update: a no-op assignment keeps the statement valid
            sets = {keys[0]: stmt.inserted[keys[0]]}
        return stmt.on_duplicate_key_update(sets)
    if dialect_name in ("postgresql", "sqlite"):  # SQLite ≥ 3.24 has the same ON CONFLICT … DO UPDATE
        if dialect_name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert

        stmt = insert(table).values({c: sa.bindparam(c) for c in columns})
        sets = {c: stmt.excluded[c] for c in update}
        if not sets:
            return stmt.on_conflict_do_nothing(index_elements=list(keys))
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=sets)
    return Merge(table, columns, keys, update)
