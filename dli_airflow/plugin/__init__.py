"""The dli control plane in Airflow's api-server: the plugin the ``airflow.plugins`` entry point registers.

Installing dli-airflow where the api-server runs is all a deployment needs: Airflow loads this plugin
from the entry point (``get_provider_info()["plugins"]`` is read only with ``[core] lazy_discover_providers
= False``) and mounts the control plane's FastAPI app at ``/dli`` (its API under ``/dli/api/v1``).

Every Airflow process loads plugins (the scheduler and the workers too), so this module stays light: the
FastAPI app is built on its first request, in the api-server only.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: where the control plane is mounted in the api-server; its API is under ``{URL_PREFIX}/api/v1``
URL_PREFIX = "/dli"


class LazyApp:
    """An ASGI app that builds the control plane's FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from dli_airflow.plugin.api import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:  # GET /api/v2/plugins shows this
        return "dli_airflow.plugin.api:create_app"


class DliPlugin(AirflowPlugin):
    """The dli control plane: the ``/dli/api/v1`` API in the api-server and the UI's Datasets page."""

    name = "dli"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "dli control plane"}]
    #: the Datasets page in the UI's navigation (the UI frames ``href``; without ``url_route`` it skips the view)
    external_views = [{
        "name": "Datasets", "href": f"{URL_PREFIX.lstrip('/')}/datasets", "url_route": "dli-datasets",
        "destination": "nav", "nav_top_level": True,
    }]


__all__ = ["URL_PREFIX", "DliPlugin", "LazyApp"]
