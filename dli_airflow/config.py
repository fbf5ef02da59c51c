"""The ``[dli]`` configuration section, read on every call.

Lookup order for ``[dli] key``: the ``AIRFLOW__DLI__KEY`` environment variable; Airflow's own
configuration when Airflow is already imported in this process (a DAG file, a task); else the
``[dli]`` section of ``$AIRFLOW_HOME/airflow.cfg`` read directly, so the CLI never imports
Airflow just to read a setting; else the default below.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Option:
    name: str
    description: str
    default: str
    type: str = "string"
    example: str | None = None


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "spec_store",
            "Where the Dataset Specs live: a local folder or s3://bucket/prefix, each holding code/ "
            "(deployed from Git by CI) and manual/ (registered through the client).",
            "{AIRFLOW_HOME}/dli/store",
            example="s3://my-bucket/dli",
        ),
        Option(
            "default_engine",
            "Engine for specs that name none: duckdb (embedded), trino or bigquery.",
            "duckdb",
            example="trino",
        ),
        Option(
            "duckdb_path",
            "The DuckDB database file the embedded engine writes to.",
            "{AIRFLOW_HOME}/dli/dli.duckdb",
            example="/data/warehouse.duckdb",
        ),
        Option(
            "aws_conn_id",
            "Airflow connection used to read an s3:// spec store (an endpoint_url in its extra points "
            "it at any S3-compatible server).",
            "aws_default",
        ),
        Option(
            "sync_interval",
            "Seconds between runs of the dli_sync maintenance DAG.",
            "300",
            type="integer",
        ),
        Option(
            "cache_dir",
            "Local folder for the last good copy of the store's specs (any disk: nothing in it must survive).",
            "{AIRFLOW_HOME}/dli/cache",
        ),
        Option(
            "render_timeout_seconds",
            "Seconds a dataset's SQL template may take to render (inside the task, so its execution_timeout "
            "applies too); a render past it fails with DLI-205 naming the file and line.",
            "10",
            type="float",
        ),
        Option(
            "import_errors",
            "Also show each broken spec in Airflow's own Dag Import Errors view, keyed to the spec file (through "
            "Airflow's private internals, checked on 3.3.2: entries flicker at each bundle refresh). The "
            "dli_spec_errors DAG lists the problems either way.",
            "False",
            type="boolean",
        ),
        Option(
            "max_rendered_bytes",
            "The most characters a dataset's rendered SQL (and any value its template builds) may have; "
            "a render past it fails with DLI-205 before the memory is used.",
            "2097152",
            type="integer",
        ),
    )
}


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()


def _from_airflow_conf(key: str) -> str | None:
    if "airflow.configuration" not in sys.modules:
        return None
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - Airflow half-imported
        return None
    value = conf.get("dli", key, fallback=None)
    if value is not None and "{AIRFLOW_HOME}" in OPTIONS[key].default:
        # Airflow's expansion of the declared default (under the AIRFLOW_HOME it started with): dli expands
        # it itself, under the AIRFLOW_HOME of now — the same in a deployment, not in a test that moves it
        try:
            if value == conf.get_default_value("dli", key):
                return None
        except Exception:  # pragma: no cover - an older parser without it
            pass
    return value


def _from_cfg_file(key: str) -> str | None:
    cfg = Path(os.environ.get("AIRFLOW_CONFIG") or airflow_home() / "airflow.cfg")
    try:
        st = cfg.stat()
    except OSError:
        return None
    # read on call, but parsed once per version of the file: Airflow's default airflow.cfg has ~4,000
    # lines, and a cold scan asks for settings once per spec
    return _dli_section(str(cfg), st.st_mtime_ns, st.st_size).get(key)


@lru_cache(maxsize=4)
def _dli_section(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """The ``[dli]`` section of one version of a config file (mtime and size are the cache key)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    return dict(parser["dli"]) if parser.has_section("dli") else {}


def get(key: str) -> str:
    """The value of ``[dli] key`` as a string (defaults filled in)."""
    option = OPTIONS[key]
    value = os.environ.get(f"AIRFLOW__DLI__{key.upper()}")
    if value is None:
        value = _from_airflow_conf(key)
    if value is None:
        value = _from_cfg_file(key)
    if value is None or value == "":
        # Airflow expands {AIRFLOW_HOME} in a provider's defaults (`airflow config get-value` shows the path);
        # here too, for a process that reads the default itself
        value = option.default.replace("{AIRFLOW_HOME}", str(airflow_home()))
    return value.strip()


def spec_store() -> str:
    return get("spec_store") or str(airflow_home() / "dli" / "store")


def default_engine() -> str:
    return get("default_engine") or "duckdb"


def duckdb_path() -> Path:
    value = get("duckdb_path")
    return Path(value).expanduser() if value else airflow_home() / "dli" / "dli.duckdb"


def cache_dir() -> Path:
    value = get("cache_dir")
    return Path(value).expanduser() if value else airflow_home() / "dli" / "cache"


def aws_conn_id() -> str:
    return get("aws_conn_id") or "aws_default"


def sync_interval() -> int:
    from dli_airflow.errors import ConfigError

    raw = get("sync_interval")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"[dli] sync_interval must be a whole number of seconds, got {raw!r}") from None
    if value < 30:
        raise ConfigError(f"[dli] sync_interval must be at least 30 seconds, got {value}")
    return value


def render_timeout_seconds() -> float:
    """``[dli] render_timeout_seconds``: how long a SQL template may take to render."""
    from dli_airflow.errors import ConfigError

    raw = get("render_timeout_seconds")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"[dli] render_timeout_seconds must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise ConfigError(f"[dli] render_timeout_seconds must be above 0 and at most 3600, got {raw}")
    return value


def max_rendered_bytes() -> int:
    """``[dli] max_rendered_bytes``: the most characters a rendered SQL template may have."""
    from dli_airflow.errors import ConfigError

    raw = get("max_rendered_bytes")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"[dli] max_rendered_bytes must be a whole number, got {raw!r}") from None
    if value < 1024:
        raise ConfigError(f"[dli] max_rendered_bytes must be at least 1024, got {value}")
    return value


#: The environment variable naming the home folder of ``dli dev`` (its database, logs and secrets).
DEV_HOME_ENV = "DLI_DEV_HOME"


def dev_home() -> Path:
    """The ``dli dev`` home: ``$DLI_DEV_HOME``, else ``~/.dli/airflow`` (the CLI's ``--home`` default)."""
    return Path(os.environ.get(DEV_HOME_ENV) or Path.home() / ".dli" / "airflow").expanduser()
