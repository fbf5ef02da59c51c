"""``DliBigQueryHook``: the Google provider's ``BigQueryHook`` with an ``api_endpoint`` from the connection.

Needs the ``bigquery`` extra (``pip install 'dli-airflow[bigquery]'``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook


class DliBigQueryHook(BigQueryHook):
    """``BigQueryHook`` that honours an ``api_endpoint`` in the connection's extra.

    ``BigQueryHook.get_client`` builds the client with ``get_client_options()``, which supports an
    ``api_endpoint_override`` but is never given one from the connection; this feeds it (an emulator, a
    private endpoint). The extra is read by name.
    """

    def get_client_options(self, api_endpoint_override: str | None = None) -> Any:
        """Client options, pointed at the connection's ``api_endpoint`` unless one is given.

        :param api_endpoint_override: an endpoint that wins over the connection's
        """
        return super().get_client_options(api_endpoint_override or self._get_field("api_endpoint"))
