"""The BigQuery engine: the Google provider's ``BigQueryHook``, one standard-SQL query job per statement.

Needs the ``bigquery`` extra (``pip install 'dli-airflow[bigquery]'``); nothing Google is imported
until a BigQuery dataset runs. The connection is the spec's ``conn_id`` (default
``google_cloud_default``); the spec's ``project`` and ``location`` override the connection's. Each
statement's values go as named query parameters (``@dli_1``, ``parameterMode: NAMED``), never into the
SQL text (and never for a name: identifiers are quoted into the text by the ``identifier`` filter). Each
statement's job id, bytes processed and DML rows affected land in its
:class:`~dli_airflow.engines.StatementResult`; :meth:`BigQueryEngine.cancel` cancels the running job;
:meth:`BigQueryEngine.dry_run` reports the bytes each statement would scan. Errors: 403 → DLI-404,
400/404 (invalid query, missing table) → DLI-405 with the line and column, 5xx → DLI-504.

An ``api_endpoint`` in the connection's extra points the client at another endpoint (an emulator, a
private endpoint); ``is_anonymous: true`` gives anonymous credentials (both read by name).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from dli_airflow.engines._base import BaseEngine, StatementResult
from dli_airflow.errors import (
    ConfigError,
    DliError,
    ExecutionError,
    ExecutionPermissionError,
    ServerExecutionError,
    SqlExecutionError,
)

if TYPE_CHECKING:
    from google.cloud.bigquery import Client, QueryJob

    from dli_airflow.bind import BoundStatement
    from dli_airflow.engines._base import Statements
    from dli_airflow.hooks.bigquery import DliBigQueryHook
    from dli_airflow.spec import DatasetSpec

log = logging.getLogger(__name__)

#: The Airflow connection used when the spec names none.
DEFAULT_CONN_ID = "google_cloud_default"
#: Prefix of the job ids this engine creates (so they are easy to find in the BigQuery console).
JOB_ID_PREFIX = "dli_"
#: 403 reasons that are limits, not missing permissions.
_LIMIT_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded", "responseTooLarge", "billingTierLimitExceeded"})


class BigQueryEngine(BaseEngine["Client"]):
    """Runs SQL on BigQuery through the provider's ``BigQueryHook``, one query job per statement.

    :param spec: the dataset's spec (``conn_id``, ``project``, ``location``).
    :param conn_id: the Airflow connection; default the spec's, else ``google_cloud_default``.
    """

    name = "bigquery"
    dialect = "bigquery"
    title = "BigQuery"

    def __init__(self, spec: DatasetSpec | None = None, conn_id: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.conn_id = conn_id or (spec.conn_id if spec is not None else None) or DEFAULT_CONN_ID
        self.project = spec.project if spec is not None else None
        self.location = spec.location if spec is not None else None

    def hook(self) -> DliBigQueryHook:
        """The provider hook (standard SQL; the spec's location over the connection's).

        :raises ConfigError: the Google provider (the ``bigquery`` extra) is not installed
        """
        try:
            from dli_airflow.hooks.bigquery import DliBigQueryHook
        except ImportError as exc:
            raise _missing_extra(exc) from exc

        kwargs: dict[str, Any] = {"gcp_conn_id": self.conn_id, "use_legacy_sql": False}
        if self.location:
            kwargs["location"] = self.location
        return DliBigQueryHook(**kwargs)

    def client(self) -> Client:
        """A ``google.cloud.bigquery.Client`` from the hook, for the spec's project and location."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            from google.auth.exceptions import GoogleAuthError
        except ImportError as exc:
            raise _missing_extra(exc) from exc
        try:
            hook = self.hook()  # the provider's hook reads the connection as it is made
            project = self.project or hook.project_id
            return hook.get_client(project_id=project, location=self.location or hook.location)
        except AirflowNotFoundException as exc:
            raise ConfigError(
                f"the Airflow connection {self.conn_id!r} for BigQuery is not defined",
                hint=f"create it (UI, `airflow connections add`, or AIRFLOW_CONN_{self.conn_id.upper()}) "
                "or set conn_id in the spec",
            ) from exc
        except GoogleAuthError as exc:
            raise ExecutionError(
                f"cannot get Google credentials from connection {self.conn_id!r}: {type(exc).__name__}",
                hint="check the connection's key file, keyfile JSON or workload identity",
            ) from exc

    def dry_run(self, statements: Statements) -> list[int]:
        """Bytes each statement would scan, from BigQuery dry-run jobs (nothing runs, nothing is billed).

        :param statements: the rendered statements, with their bound values
        """
        from google.cloud.bigquery import QueryJobConfig

        from dli_airflow.bind import BoundStatement

        client = self.client()
        sizes: list[int] = []
        try:
            for index, item in enumerate(statements, start=1):
                statement = BoundStatement.of(item, self.dialect)
                config = QueryJobConfig(dry_run=True, use_query_cache=False, use_legacy_sql=False)
                if statement.values:
                    config.query_parameters = query_parameters(statement)
                try:
                    job = client.query(statement.sql, job_config=config, job_retry=None)
                except Exception as exc:
                    raise self._error(exc, index, len(statements), None) from exc
                sizes.append(int(job.total_bytes_processed or 0))
                log.info("BigQuery dry run of statement %d: %s bytes would be processed", index, sizes[-1])
        finally:
            client.close()
        return sizes

    # -- BaseEngine --------------------------------------------------------------------------------------
    def _open(self) -> Client:
        return self.client()

    def _cancel_handle(self, handle: QueryJob) -> None:
        handle.cancel()
        log.info("BigQuery job %s: cancel requested", handle.job_id)

    def _run_statement(
        self, session: Client, statement: BoundStatement, *, index: int, total: int, max_rows: int
    ) -> StatementResult:
        from google.cloud.bigquery import QueryJobConfig

        job: QueryJob | None = None
        sql = statement.sql
        config = QueryJobConfig(use_legacy_sql=False, labels=self._labels())
        if statement.values:  # named query parameters: @dli_1 in the SQL, the values apart
            config.query_parameters = query_parameters(statement)
        try:
            # job_retry=None: a failed job surfaces at once and Airflow's retries (the spec's) apply
            job = session.query(sql, job_config=config, job_id_prefix=JOB_ID_PREFIX, job_retry=None)
            self._track(job)  # a cancel that came while the job was being created is sent now
            log.info("BigQuery job %s: statement %d of %d", job.job_id, index, total)
            iterator = job.result(max_results=max_rows + 1, job_retry=None)
            rows = list(iterator)
        except Exception as exc:
            if self.cancelled:
                raise self._cancelled_error(index, total, _job_ref(job)) from exc
            raise self._error(exc, index, total, job) from exc
        finally:
            self._track(None)
        if self.cancelled:
            raise self._cancelled_error(index, total, _job_ref(job))
        columns = tuple(f.name for f in (iterator.schema or ()))
        truncated = len(rows) > max_rows
        rows = rows[:max_rows]
        if job.num_dml_affected_rows is not None:
            affected: int | None = int(job.num_dml_affected_rows)
        else:
            affected = None if truncated or not columns else len(rows)
        log.info(
            "BigQuery job %s: %s, %s bytes processed, %s row(s) affected",
            job.job_id,
            job.statement_type or "query",
            job.total_bytes_processed,
            "?" if affected is None else affected,
        )
        return StatementResult(
            sql=sql,
            rows_affected=affected,
            columns=columns,
            rows=tuple(tuple(row.values()) for row in rows),
            truncated=truncated,
            query_id=job.job_id,
            bytes_processed=job.total_bytes_processed,
        )

    # -- internals -----------------------------------------------------------------------------------------
    def _labels(self) -> dict[str, str]:
        if self.spec is None:
            return {}
        # label values: lower case letters, digits, _ and -, at most 63 characters
        return {"dli_dataset": re.sub(r"[^a-z0-9_-]", "_", self.spec.name.lower())[:63]}

    def _error(self, exc: Exception, index: int, total: int, job: QueryJob | None) -> DliError:
        import requests
        from google.api_core.exceptions import GoogleAPICallError
        from google.auth.exceptions import GoogleAuthError

        where = f"statement {index} of {total}"
        jid = f" (job {job.job_id})" if job is not None and job.job_id else ""
        if isinstance(exc, GoogleAuthError):
            return ExecutionError(
                f"{where}: cannot get Google credentials from connection {self.conn_id!r}: {type(exc).__name__}",
                hint="check the connection's key file, keyfile JSON or workload identity",
            )
        if not isinstance(exc, GoogleAPICallError):
            if isinstance(exc, (requests.RequestException, OSError)):
                return ExecutionError(
                    f"{where}: cannot reach BigQuery through connection {self.conn_id!r}: {type(exc).__name__}",
                    hint="check the network and the connection's api_endpoint",
                )
            return ExecutionError(f"{where} failed on BigQuery{jid}: {type(exc).__name__}: {_first_line(str(exc))}")
        code = exc.code if isinstance(exc.code, int) else 0
        reason = (exc.errors[0] or {}).get("reason") if exc.errors else None
        message = _api_message(exc)
        if code in (401, 403) and reason not in _LIMIT_REASONS:
            return ExecutionPermissionError(f"{where} was refused by BigQuery{jid}: {message}")
        if code in (400, 404):
            position = re.search(r"at \[(\d+):(\d+)\]", message)
            at = f" at line {position.group(1)}, column {position.group(2)}" if position else ""
            return SqlExecutionError(f"{where} failed on BigQuery{jid}{at}: {message}")
        if code >= 500 or code in (403, 429):
            return ServerExecutionError(
                f"{where} failed inside BigQuery{jid}: {reason or code}: {message}",
                hint="a server-side failure or limit, not the SQL: the task retries; if it persists, give the "
                "job id to the BigQuery admins",
            )
        return ExecutionError(f"{where} failed on BigQuery{jid}: {reason or code}: {message}")


def query_parameters(statement: BoundStatement) -> list[Any]:
    """The statement's values as BigQuery named query parameters (scalars, and arrays of scalars)."""
    from google.cloud.bigquery import ArrayQueryParameter, ScalarQueryParameter

    from dli_airflow.bind import bigquery_type

    parameters: list[Any] = []
    for bound in statement.values:
        kind = bigquery_type(bound.value)
        if kind.startswith("ARRAY<"):
            parameters.append(ArrayQueryParameter(bound.name, kind[6:-1], list(bound.value)))
        else:
            parameters.append(ScalarQueryParameter(bound.name, kind, bound.value))
    return parameters


def _missing_extra(exc: ImportError) -> ConfigError:
    return ConfigError(f"the bigquery engine is not available: {exc}", hint="pip install 'dli-airflow[bigquery]'")


def _job_ref(job: QueryJob | None) -> str | None:
    return f"job {job.job_id}" if job is not None else None


def _api_message(exc: Any) -> str:
    """The server's message, without the URL and the footer the client library appends."""
    errors = getattr(exc, "errors", None) or []
    text = (errors[0] or {}).get("message") if errors else None
    return _first_line(text or getattr(exc, "message", "") or str(exc))


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else ""
