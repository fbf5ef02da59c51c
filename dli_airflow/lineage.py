"""OpenLineage for a dataset run: the datasets its SQL reads and writes, and the ``dli_dataset`` run facet.

Needs the ``openlineage`` extra (``pip install 'dli-airflow[openlineage]'``); only
:class:`~dli_airflow.operators.DatasetQueryOperator`'s ``get_openlineage_facets_on_*`` methods import
this module, and Airflow's OpenLineage provider calls those only when it is installed and configured.

What is parsed is what ran: the rendered statements, each with its values inlined as literals (the
"Rendered Template" text), parsed by ``openlineage-sql`` through the provider's
:class:`~airflow.providers.openlineage.sqlparser.SQLParser` in the engine's dialect:

- DuckDB: namespace ``duckdb://<absolute path of the database file>`` (``duckdb://:memory:`` for a
  throw-away database), names ``schema.table``, unqualified tables in ``main``;
- Trino: the ``TrinoHook``'s own OpenLineage methods (namespace ``trino://host:port``, names
  ``catalog.schema.table``), with the spec's catalog and schema over the connection's; on completion the
  tables' columns are read from ``information_schema``, as ``SQLExecuteQueryOperator`` does;
- BigQuery: namespace ``bigquery``, names ``project.dataset.table``, from each job's statistics
  (``referencedTables``, the DDL target, a named destination) on completion, else from the SQL.

A table a run writes and then reads (``CREATE TABLE t AS …; SELECT * FROM t``, the usual last statement
of a dataset) is an output only, not also an input; DuckDB table functions (``read_csv(…)``,
``range(…)``) are not tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser
from openlineage.client.event_v2 import Dataset
from openlineage.client.facet_v2 import RunFacet, sql_job

if TYPE_CHECKING:
    from dli_airflow.spec import DatasetSpec

log = logging.getLogger(__name__)

#: Where a run is in its life: what the provider's START, COMPLETE and FAIL events ask for.
Phase = Literal["start", "complete", "failure"]
#: The run facet's key in ``run.facets`` of every event.
FACET_KEY = "dli_dataset"
#: The ``_schemaURL`` of :class:`DliDatasetRunFacet` (the README section that describes its fields).
FACET_SCHEMA_URL = "https://pypi.org/project/dli-airflow/#openlineage"
#: The namespace of every BigQuery dataset (OpenLineage's naming: ``bigquery``, ``project.dataset.table``).
BIGQUERY_NAMESPACE = "bigquery"
#: DuckDB's schema for unqualified table names.
DUCKDB_DEFAULT_SCHEMA = "main"
#: DuckDB table functions ``openlineage-sql`` reads as tables (``FROM read_csv('x.csv')``).
DUCKDB_TABLE_FUNCTIONS = frozenset({
    "generate_series", "glob", "parquet_metadata", "parquet_scan", "parquet_schema", "range", "read_blob",
    "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_json_objects", "read_ndjson",
    "read_ndjson_auto", "read_parquet", "read_text", "read_xlsx", "sniff_csv", "unnest",
})


@attrs.define
class DliDatasetRunFacet(RunFacet):
    """The dli dataset a run belongs to.

    :param name: the dataset's name (``analytics.daily_clicks``)
    :param source: where its spec came from: ``code`` (the reviewed repository) or ``manual`` (registered)
    :param engine: ``duckdb``, ``trino`` or ``bigquery``
    :param queryIds: the engine's query or job ids, one per statement that ran (COMPLETE events)
    """

    name: str
    source: str
    engine: str
    queryIds: list[str] = attrs.field(factory=list)  # camelCase, as OpenLineage facets are

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


def operator_lineage(
    spec: DatasetSpec,
    *,
    source: str,
    statements: Sequence[str],
    query_ids: Sequence[str | None] = (),
    phase: Phase,
) -> OperatorLineage:
    """The OpenLineage metadata of a run of ``spec``: its datasets and the ``dli_dataset`` run facet.

    :param spec: the dataset's spec (its engine, connection, catalog, schema, project)
    :param source: ``code`` or ``manual``
    :param statements: the rendered statements, values inlined; none when the SQL was not rendered (the
        event then has the facet only)
    :param query_ids: the engine's id of each statement that ran (BigQuery reads its jobs' statistics)
    :param phase: ``start`` parses only; ``complete`` may ask the engine (Trino's columns, BigQuery's jobs)
    """
    engine = spec.resolved_engine
    facet = DliDatasetRunFacet(
        name=spec.name, source=str(source), engine=engine, queryIds=[q for q in query_ids if q]
    )
    if not statements:
        lineage = OperatorLineage()
    elif engine == "trino":
        lineage = _trino(spec, statements, use_connection=phase == "complete")
    elif engine == "bigquery":
        lineage = _bigquery(spec, statements, query_ids if phase == "complete" else ())
    else:
        lineage = _duckdb(statements)
    lineage.run_facets = {**lineage.run_facets, FACET_KEY: facet}
    return lineage


def duckdb_database_info(path: str | Path) -> DatabaseInfo:
    """The OpenLineage namespace parts of a DuckDB database: ``duckdb://`` and the file's absolute path.

    :param path: the database file, or ``:memory:``
    """
    text = str(path)
    authority = text if text == ":memory:" else str(Path(text).expanduser().resolve())
    return DatabaseInfo(scheme="duckdb", authority=authority)


def sql_lineage(
    statements: Sequence[str],
    *,
    parser: SQLParser,
    database_info: DatabaseInfo,
    hook: Any = None,
    use_connection: bool = False,
) -> OperatorLineage:
    """The datasets of ``statements`` parsed by ``parser`` (the provider's SQL parse), without own reads.

    :param statements: the statements as they ran, values inlined
    :param parser: the provider's parser, with the engine's dialect and default schema
    :param database_info: the engine's namespace parts and default database
    :param hook: the hook that reads the tables' columns when ``use_connection`` (Trino)
    :param use_connection: read the columns of the tables from the engine (schema facets)
    """
    lineage = parser.generate_openlineage_metadata_from_sql(
        sql=list(statements), hook=hook, database_info=database_info, use_connection=use_connection
    )
    lineage.job_facets = {**lineage.job_facets, "sql": _sql_facet(statements, parser.dialect)}
    tables = [_parsed_tables(parser, statement, database_info) for statement in statements]
    lineage.inputs = _without_own_reads(lineage.inputs, tables)
    if parser.dialect == "duckdb":
        lineage.inputs = [d for d in lineage.inputs if not _is_duckdb_table_function(d.name)]
    return lineage


def bigquery_lineage(statements: Sequence[str], jobs: Sequence[Any | None], *, project: str | None) -> OperatorLineage:
    """The datasets of a BigQuery run: each job's statistics, else its statement's SQL.

    :param statements: the statements as they ran, values inlined
    :param jobs: the ``QueryJob`` of each statement (``None``: not known), as ``client.get_job`` returns it
    :param project: the project of names the SQL does not qualify
    """
    parser = SQLParser(dialect="bigquery")
    info = DatabaseInfo(scheme=BIGQUERY_NAMESPACE, database=project)
    lineage = sql_lineage(statements, parser=parser, database_info=info)
    if not any(job is not None for job in jobs):
        return lineage
    tables: list[tuple[list[str], list[str]]] = []
    for index, statement in enumerate(statements):
        parsed_in, parsed_out = _parsed_tables(parser, statement, info)
        job_in, job_out = _job_tables(jobs[index] if index < len(jobs) else None)
        # each side falls back alone: a DML job may name what it read and not the table it changed
        tables.append((job_in or parsed_in, job_out or parsed_out))
    outputs = _unique(name for _, outs in tables for name in outs)
    inputs = _without_own_reads(_datasets(_unique(name for ins, _ in tables for name in ins), info), tables)
    parsed = {d.name: d for d in lineage.outputs}  # keep the parse's column lineage where the names agree
    lineage.inputs = inputs
    lineage.outputs = [parsed.get(name) or Dataset(namespace=BIGQUERY_NAMESPACE, name=name) for name in outputs]
    return lineage


# -- per engine -----------------------------------------------------------------------------------------------


def _duckdb(statements: Sequence[str]) -> OperatorLineage:
    from dli_airflow.engines.duckdb import DuckDBEngine

    # the database the operator runs on: [dli] duckdb_path (nothing is opened here)
    info = duckdb_database_info(DuckDBEngine().path)
    parser = SQLParser(dialect="duckdb", default_schema=DUCKDB_DEFAULT_SCHEMA)
    return sql_lineage(statements, parser=parser, database_info=info)


def _trino(spec: DatasetSpec, statements: Sequence[str], *, use_connection: bool) -> OperatorLineage:
    from dli_airflow.engines.trino import TrinoEngine

    engine = TrinoEngine(spec=spec)
    hook = engine.hook()  # the spec's catalog and schema over the connection's
    connection = hook.get_connection(engine.conn_id)
    info = hook.get_openlineage_database_info(connection)
    # TrinoHook's default schema is Trino's "default"; a session's is the connection's (or the spec's)
    schema = connection.schema or hook.get_openlineage_default_schema()
    parser = SQLParser(dialect=hook.get_openlineage_database_dialect(connection), default_schema=schema)
    return sql_lineage(statements, parser=parser, database_info=info, hook=hook, use_connection=use_connection)


def _bigquery(spec: DatasetSpec, statements: Sequence[str], query_ids: Sequence[str | None]) -> OperatorLineage:
    from dli_airflow.engines.bigquery import BigQueryEngine

    engine = BigQueryEngine(spec=spec)
    project = spec.project or engine.hook().project_id
    jobs: list[Any | None] = []
    if any(query_ids):
        jobs = _fetch_jobs(engine, query_ids)
    return bigquery_lineage(statements, jobs, project=project)


def _fetch_jobs(engine: Any, query_ids: Sequence[str | None]) -> list[Any | None]:
    """Each statement's job (``None`` where it has no id); none at all when BigQuery cannot be asked."""
    try:
        client = engine.client()
    except Exception as exc:  # noqa: BLE001 - lineage must not fail the event: the SQL parse stands in
        log.warning("OpenLineage: cannot reach BigQuery for the jobs' statistics (%s); parsing the SQL", exc)
        return []
    jobs: list[Any | None] = []
    try:
        for job_id in query_ids:
            job = None
            if job_id:
                try:
                    job = client.get_job(job_id)
                except Exception as exc:  # noqa: BLE001 - one job: its statement's SQL stands in
                    log.warning("OpenLineage: cannot read BigQuery job %s (%s); parsing its SQL", job_id, exc)
            jobs.append(job)
    finally:
        client.close()
    return jobs


# -- helpers ----------------------------------------------------------------------------------------------


def _sql_facet(statements: Sequence[str], dialect: str | None) -> sql_job.SQLJobFacet:
    return sql_job.SQLJobFacet(query=SQLParser.normalize_sql(list(statements)), dialect=dialect)


def _parsed_tables(parser: SQLParser, statement: str, info: DatabaseInfo) -> tuple[list[str], list[str]]:
    """The names one statement reads and writes, as the whole parse names them."""
    meta = parser.parse(parser.split_sql_string(statement))
    if meta is None:
        return [], []
    inputs, outputs = parser.get_metadata_from_parser(
        inputs=meta.in_tables, outputs=meta.out_tables, database_info=info
    )
    return [d.name for d in inputs], [d.name for d in outputs]


def _without_own_reads(inputs: list[Dataset], tables: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[Dataset]:
    """``inputs`` less the tables only ever read after an earlier statement of the run wrote them.

    :param tables: per statement in order, the names it reads and the names it writes
    """
    written: set[str] = set()
    read_before: set[str] = set()
    read_after: set[str] = set()
    for reads, writes in tables:
        for name in reads:
            (read_after if name in written else read_before).add(name)
        written.update(writes)
    own = read_after - read_before
    return [d for d in inputs if d.name not in own]


def _is_duckdb_table_function(name: str) -> bool:
    schema, _, table = name.rpartition(".")
    return schema == DUCKDB_DEFAULT_SCHEMA and table.lower() in DUCKDB_TABLE_FUNCTIONS


def _job_tables(job: Any | None) -> tuple[list[str], list[str]]:
    """The tables a BigQuery job read (``referencedTables``) and wrote (DDL target, a named destination)."""
    if job is None:
        return [], []
    written = [getattr(job, "ddl_target_table", None), getattr(job, "destination", None)]
    # a query's results go to an anonymous table in a hidden dataset ("_…"): not an output
    outputs = _unique(_table_name(t) for t in written if t is not None and not str(t.dataset_id).startswith("_"))
    referenced = [_table_name(t) for t in (getattr(job, "referenced_tables", None) or [])]
    return [name for name in _unique(referenced) if name not in outputs], outputs


def _table_name(table: Any) -> str:
    return f"{table.project}.{table.dataset_id}.{table.table_id}"


def _unique(names: Any) -> list[str]:
    return list(dict.fromkeys(names))


def _datasets(names: Sequence[str], info: DatabaseInfo) -> list[Dataset]:
    namespace = SQLParser.create_namespace(info)
    return [Dataset(namespace=namespace, name=name) for name in names]
