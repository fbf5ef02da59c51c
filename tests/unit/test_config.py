"""``[dli]`` settings (``dli_airflow.config``): environment over airflow.cfg over defaults, read on every call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dli_airflow import config


@pytest.fixture(autouse=True)
def no_airflow_conf(monkeypatch) -> None:
    """As in a process that has not imported Airflow (the CLI): earlier tests of this session may have."""
    monkeypatch.setattr(config, "_from_airflow_conf", lambda key: None)


def test_environment_wins_over_the_file_and_defaults_fill_the_rest(dli_isolated: Path, monkeypatch) -> None:
    (dli_isolated / "airflow.cfg").write_text("[dli]\ndefault_engine = trino\n")
    assert config.default_engine() == "trino"
    monkeypatch.setenv("AIRFLOW__DLI__DEFAULT_ENGINE", "bigquery")
    assert config.default_engine() == "bigquery"
    assert config.sync_interval() == 300


def test_a_changed_file_is_read_again(dli_isolated: Path) -> None:
    cfg = dli_isolated / "airflow.cfg"
    cfg.write_text("[dli]\ndefault_engine = trino\n")
    assert config.default_engine() == "trino"
    cfg.write_text("[dli]\ndefault_engine = bigquery\n")
    os.utime(cfg, ns=(cfg.stat().st_atime_ns, cfg.stat().st_mtime_ns + 1_000_000))
    assert config.default_engine() == "bigquery"
    cfg.unlink()
    assert config.default_engine() == "duckdb"


def test_a_big_airflow_cfg_is_parsed_once_per_version(dli_isolated: Path, monkeypatch) -> None:
    cfg = dli_isolated / "airflow.cfg"
    cfg.write_text("[core]\n" + "".join(f"key{i} = {i}\n" for i in range(4000)) + "[dli]\ndefault_engine = trino\n")
    parses: list[str] = []
    real = config.configparser.ConfigParser.read

    def counting(self, filenames, encoding=None):  # noqa: ANN001
        parses.append(str(filenames))
        return real(self, filenames, encoding=encoding)

    monkeypatch.setattr(config.configparser.ConfigParser, "read", counting)
    assert {config.default_engine() for _ in range(1000)} == {"trino"}
    assert len(parses) == 1


def test_the_paths_default_under_airflow_home_and_airflow_shows_them(dli_isolated: Path, tmp_path: Path) -> None:
    """``airflow config get-value dli spec_store`` prints the path dli uses (not an empty string), and an
    empty value in airflow.cfg (what an older version wrote there) still means that default."""
    import subprocess
    import sys

    home = Path(os.environ["AIRFLOW_HOME"])
    assert config.spec_store() == str(home / "dli" / "store")
    assert config.cache_dir() == home / "dli" / "cache" and config.duckdb_path() == home / "dli" / "dli.duckdb"
    (dli_isolated / "airflow.cfg").write_text("[dli]\nspec_store =\n")
    assert config.spec_store() == str(home / "dli" / "store")
    airflow_home = tmp_path / "fresh-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"AIRFLOW_HOME": str(airflow_home)}
    got = subprocess.run([sys.executable, "-m", "airflow", "config", "get-value", "dli", "spec_store"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip().splitlines()[-1] == str(airflow_home / "dli" / "store")
