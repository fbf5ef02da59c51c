"""``DliTrinoHook``: the Trino provider's ``TrinoHook`` with a dataset's catalog and schema."""

from __future__ import annotations

import copy
import json
from typing import Any

from airflow.providers.trino.hooks.trino import TrinoHook


class DliTrinoHook(TrinoHook):
    """``TrinoHook`` whose connection carries the spec's catalog and schema.

    ``TrinoHook.get_conn`` reads the catalog only from the connection's extra and the schema only from
    the connection, so the override is applied to (a copy of) the connection it reads.

    :param catalog: the catalog over the connection's ``extra.catalog``
    :param db_schema: the schema over the connection's schema
    """

    def __init__(self, *args: Any, catalog: str | None = None, db_schema: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog_override = catalog
        self.schema_override = db_schema

    def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
        """The connection ``conn_id``, with the overrides applied to a copy."""
        connection = super().get_connection(conn_id)
        if not (self.catalog_override or self.schema_override):
            return connection
        connection = copy.copy(connection)
        if self.schema_override:
            connection.schema = self.schema_override
        if self.catalog_override:
            connection.extra = json.dumps({**connection.extra_dejson, "catalog": self.catalog_override})
        return connection
