"""The control plane's list against Airflow's own DAG list, the cold CLI, and register → runnable.

For each size N (``--sizes``, default 1,000 and 10,000) it generates a store of N paused datasets
(``bench/client.py``'s ``make_store``: nothing is scheduled, nothing runs), starts a real local Airflow on it
(``dli_airflow.dev.up``, a fresh temporary home and a free port each), waits until the dag-processor has
parsed all N DAGs (printing progress, then how long that took), measures, and stops that Airflow again before
the next size. Every Airflow it starts is stopped, whatever happens (Ctrl-C and SIGTERM included).

What it measures, with ``--repeat`` repeats (medians; each call's first, cold, pass is shown apart):

- **baseline**: every dli DAG through Airflow's own REST API, ``GET /api/v2/dags?tags=dli&limit=&offset=``,
  pages as large as Airflow allows (``[api] maximum_page_limit``, 100 by default: a ``limit=1000`` is cut to
  it silently; the page size found is printed), with an ``httpx.Client`` and a bearer token;
- **control plane**: every workflow through ``GET /dli/api/v1/workflows?limit=1000&offset=`` (dli's own
  API in the api-server: the store's specs joined with Airflow's state), same client, same token;
  the figure is the sum of the requests' wall times as the client sees them on 127.0.0.1 (the "server
  time"), with the request count; the ratio plane / baseline has a target of ≤ 2.0;
- **cold CLI** (at N = 1,000 only): a fresh ``python -m dli_airflow.cli workflow list --format json``
  process (environment: only PATH, an empty HOME, ``DLI_AIRFLOW_URL`` and ``DLI_AIRFLOW_TOKEN``: the URL
  and a token) against a fresh ``python -m dli_airflow.cli --help`` plus the control plane's paging time
  above; the ratio ``list / (help + requests)`` has a target of ≤ 1.2. Also shown: the same list with
  ``_USERNAME``/``_PASSWORD`` instead (one token request more) and a process that only imports the CLI
  and the client (the part of a list before its first request);
- **register → runnable** (at N = 10, on an Airflow of its own, and at N = 1,000): ``POST /dli/api/v1/workflows``
  of a new small dataset with an integer parameter (admin token), then the seconds until
  ``GET /api/v2/dags/<name>`` answers with ``is_stale`` false and a dry run
  (``POST /dli/api/v1/workflows/<name>/runs`` with ``{"dry_run": true}``) answers 200; then
  ``DELETE /dli/api/v1/workflows/<name>``. ``--register-repeat`` times, distinct names, median printed, with
  the dag-processor settings in force (``airflow.cfg`` of the dev home and the environment ``dev.up`` gave
  the processes; the environment wins).

Nothing is asserted about time: targets are printed as PASS / over target and the exit code is 0 (1 only when
a measurement could not be made). The last block lists the lines a README would quote, each with the command
that reproduces it.

At 10,000 datasets the single DAG file ``dev.up`` writes takes longer to parse than Airflow's 30 s
``[core] dagbag_import_timeout`` (see the README's "Large stores: shard the DAG file"); this benchmark is about
the API, not the parse, so above 2,000 datasets it raises that timeout and ``[dag_processor]
dag_file_processor_timeout`` (``--import-timeout``) and says so.

    python bench/plane.py                        # N = 1,000 and 10,000 (and 10 for register): long
    python bench/plane.py --sizes 1000 --repeat 3
    python bench/plane.py --quick                # smoke: N = 20, 2 repeats, 1 registration (a few minutes)
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from client import make_store  # bench/client.py: the same store of paused datasets

from dli_airflow import dev

#: the control plane's page (``PLANE_PAGE`` of the client, ``MAX_PAGE`` of the API)
PLANE_PAGE = 1000
#: what the baseline asks for first, to see how many DAGs Airflow's API really gives in one page
PROBE_LIMIT = 1000
PLANE_TARGET = 2.0
CLI_TARGET = 1.2
#: sizes with extra measurements (``--quick`` measures everything at its one size instead)
CLI_SIZE = 1000
REGISTER_SIZES = (10, 1000)
#: above this many datasets the one DAG file outlasts Airflow's import timeouts (README: shard the DAG file)
LARGE_STORE = 2000
DEFAULT_IMPORT_TIMEOUT = 1800
#: settings printed with the register figures: (section, key)
SETTINGS = (
    ("dag_processor", "refresh_interval"),
    ("dag_processor", "min_file_process_interval"),
    ("dag_processor", "parsing_processes"),
    ("dag_processor", "dag_file_processor_timeout"),
    ("core", "dagbag_import_timeout"),
    ("api", "maximum_page_limit"),
)
#: Airflow 3.3's defaults of SETTINGS (config_templates/config.yml), shown when neither cfg nor env sets one
AIRFLOW_DEFAULTS = {
    "refresh_interval": "300", "min_file_process_interval": "30", "parsing_processes": "2",
    "dag_file_processor_timeout": "50", "dagbag_import_timeout": "30.0", "maximum_page_limit": "100",
}

#: the dataset registered by the register measurement (inline query, one integer parameter, no schedule)
REGISTER_SPEC = (
    "name: {name}\n"
    "owner: bench@example.com\n"
    "description: registered by bench/plane.py\n"
    "query: SELECT {{{{ n }}}} * 2 AS doubled\n"
    "parameters:\n"
    "  - {{name: n, type: integer, default: 1}}\n"
)


# --------------------------------------------------------------------------- results


@dataclass
class Paging:
    """One way of listing everything: medians over the repeats, and the first (cold) pass."""

    label: str
    page: int
    seconds: float = 0.0
    requests: int = 0
    items: int = 0
    first: float = 0.0
    samples: list[float] = field(default_factory=list)


@dataclass
class Cli:
    help_s: float
    list_s: float
    requests_s: float
    #: the same list with a username and password (one ``POST /auth/token`` more)
    password_list_s: float
    #: a fresh process that only imports the CLI and the client (what a list costs before its request)
    imports_s: float

    @property
    def ratio(self) -> float:
        return self.list_s / (self.help_s + self.requests_s)


@dataclass
class Register:
    runnable: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)


@dataclass
class SizeResult:
    n: int
    up_s: float | None = None
    parsed_s: float | None = None  # dag-processor start -> all N listed
    listed_s: float | None = None  # dev.up start -> all N listed
    extra_env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_page: int | None = None
    max_page_note: str = ""
    baseline: Paging | None = None
    plane: Paging | None = None
    cli: Cli | None = None
    register: Register | None = None
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def fmt_n(n: int) -> str:
    return f"{n:,}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "over target"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM (so stopping Airflow is not cut short); they are re-raised afterwards."""
    pending: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            raise KeyboardInterrupt


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so every try/finally runs: Airflow is stopped on `kill` too


def process_start_epoch(home: Path, name: str) -> float | None:
    """Wall-clock start time of one dev process (``<home>/run/<name>.pid`` and ``/proc``), or None."""
    try:
        pid = int(json.loads((home / "run" / f"{name}.pid").read_text())["pid"])
        stat = Path(f"/proc/{pid}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, KeyError, IndexError, StopIteration):
        return None


def settings_in_force(home: Path) -> dict[str, tuple[str, str]]:
    """key -> (value, where it comes from) for SETTINGS: the dag-processor's environment (as ``dev.up`` set it)
    over ``<home>/airflow.cfg`` over Airflow's default. Only the environment variables of these settings are
    read from the process, nothing else."""
    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    cfg_path = home / "airflow.cfg"
    with contextlib.suppress(OSError, configparser.Error):
        cfg.read(cfg_path, encoding="utf-8")
    wanted = {f"AIRFLOW__{section.upper()}__{key.upper()}": key for section, key in SETTINGS}
    env: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((home / "run" / "dag-processor.pid").read_text())["pid"])
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            name, _, value = item.decode("utf-8", "replace").partition("=")
            if name in wanted:
                env[name] = value
    found: dict[str, tuple[str, str]] = {}
    for section, key in SETTINGS:
        var = f"AIRFLOW__{section.upper()}__{key.upper()}"
        in_cfg = cfg.get(section, key, fallback=None) if cfg.has_section(section) else None
        if var in env:
            where = f"env {var}" + (f"; airflow.cfg says {in_cfg}" if in_cfg is not None else "")
            found[f"{section}.{key}"] = (env[var], where)
        elif in_cfg is not None:
            found[f"{section}.{key}"] = (in_cfg, f"{cfg_path.name}")
        else:
            found[f"{section}.{key}"] = (AIRFLOW_DEFAULTS[key], "Airflow default")
    return found


def timed_get(http: httpx.Client, path: str, params: dict[str, Any]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = http.get(path, params=params)  # reads the whole body
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response


def page_through(http: httpx.Client, path: str, key: str, limit: int, params: dict[str, Any]) -> tuple[float, int, int]:
    """Every item of a paged list: (sum of the requests' wall times, requests, items)."""
    seconds, requests, items, offset = 0.0, 0, 0, 0
    while True:
        elapsed, response = timed_get(http, path, {**params, "limit": limit, "offset": offset})
        seconds += elapsed
        requests += 1
        body = response.json()
        batch = body[key]
        items += len(batch)
        offset += len(batch)
        if not batch or offset >= int(body["total_entries"]):
            return seconds, requests, items


# --------------------------------------------------------------------------- phases


def wait_parsed(http: httpx.Client, n: int, deadline: float, started: float) -> None:
    """Poll ``GET /api/v2/dags?tags=dli&limit=1`` until total_entries reaches N (progress every ~15 s)."""
    last_shown, total = 0.0, None
    while True:
        try:
            response = http.get("/api/v2/dags", params={"tags": "dli", "limit": 1})
            total = int(response.json()["total_entries"]) if response.status_code == 200 else total
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        now = time.monotonic()
        if total is not None and total >= n:
            if total > n:
                print(f"  note: {total} DAGs tagged dli, {n} expected (is dli_spec_errors there?)")
            return
        if now > deadline:
            raise TimeoutError(f"only {total} of {n} DAGs listed after {now - started:.0f} s")
        if now - last_shown >= 15:
            print(f"  ... {total if total is not None else '?'} of {fmt_n(n)} DAGs listed, {now - started:.0f} s")
            last_shown = now
        time.sleep(1.0 if n <= 1000 else 2.0)


def measure_paging(http: httpx.Client, result: SizeResult, repeat: int, settings_page: str) -> None:
    n = result.n
    # How many DAGs does Airflow give for limit=1000? Fewer than asked (and than there are) = its maximum.
    probe = http.get("/api/v2/dags", params={"tags": "dli", "limit": PROBE_LIMIT, "offset": 0})
    probe.raise_for_status()
    got, total = len(probe.json()["dags"]), int(probe.json()["total_entries"])
    if got < min(PROBE_LIMIT, total):
        result.max_page = got
        result.max_page_note = f"limit={PROBE_LIMIT} gave {got} of {total} DAGs: the largest page is {got}"
    else:
        # Too few DAGs to see the cut: fall back on the setting the api-server runs with.
        result.max_page = int(settings_page) if settings_page.isdigit() else PROBE_LIMIT
        result.max_page_note = (f"limit={PROBE_LIMIT} gave all {got} DAGs (too few to see the cut); "
                                f"[api] maximum_page_limit = {settings_page} is used")
    base = Paging("baseline  GET /api/v2/dags", page=result.max_page)
    plane = Paging("plane     GET /dli/api/v1/workflows", page=PLANE_PAGE)
    calls = {
        id(base): lambda: page_through(http, "/api/v2/dags", "dags", base.page, {"tags": "dli"}),
        id(plane): lambda: page_through(http, "/dli/api/v1/workflows", "workflows", plane.page, {}),
    }
    # The first pass of each is cold (the plane builds its app and reads the store on its first request).
    for paging in (base, plane):
        paging.first, paging.requests, paging.items = calls[id(paging)]()
    requests = {id(base): [], id(plane): []}
    for _ in range(repeat):  # interleaved, so the machine's noise falls on both
        for paging in (base, plane):
            seconds, count, items = calls[id(paging)]()
            paging.samples.append(seconds)
            requests[id(paging)].append(count)
            paging.items = items
    for paging in (base, plane):
        paging.seconds = median(paging.samples)
        paging.requests = int(median(requests[id(paging)]))
        if paging.items != n:
            result.errors.append(f"{paging.label.split()[0]} listed {paging.items} items, not {n}")
    result.baseline, result.plane = base, plane


def measure_cli(url: str, token: str, username: str, password: str, result: SizeResult, repeat: int,
                scratch: Path) -> None:
    home = scratch / "cli-home"
    home.mkdir(exist_ok=True)
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DLI_AIRFLOW_URL": url}
    with_token = {**base, "DLI_AIRFLOW_TOKEN": token}
    with_password = {**base, "DLI_AIRFLOW_USERNAME": username, "DLI_AIRFLOW_PASSWORD": password}
    list_cmd = [sys.executable, "-m", "dli_airflow.cli", "workflow", "list", "--format", "json"]
    help_cmd = [sys.executable, "-m", "dli_airflow.cli", "--help"]
    # what `dli workflow list` imports: the CLI and the bare transport (the client's models are not on its path)
    imports_cmd = [sys.executable, "-c", "import dli_airflow.cli.workflow, dli_airflow._api, httpcore"]

    def run(cmd: list[str], env: dict[str, str] = with_token) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=scratch, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return elapsed, done.stdout

    # One untimed run of each (the page cache, the .pyc files), and a check of what `list` answers.
    run(help_cmd)
    for env in (with_token, with_password):
        listed = json.loads(run(list_cmd, env)[1])
        if int(listed["total_count"]) != result.n or len(listed["workflows"]) != result.n:
            result.errors.append(f"dli workflow list showed {len(listed['workflows'])} of {listed['total_count']}")
    helps, lists, password_lists, imports = [], [], [], []
    for _ in range(repeat):  # interleaved, so a noisy second hits all four alike
        helps.append(run(help_cmd)[0])
        lists.append(run(list_cmd)[0])
        password_lists.append(run(list_cmd, with_password)[0])
        imports.append(run(imports_cmd)[0])
    assert result.plane is not None
    result.cli = Cli(help_s=median(helps), list_s=median(lists), requests_s=result.plane.seconds,
                     password_list_s=median(password_lists), imports_s=median(imports))


def measure_register(http: httpx.Client, result: SizeResult, repeat: int, timeout: float) -> None:
    reg = Register()
    for k in range(repeat):
        name = f"bench.registered_{k:02d}"
        spec = REGISTER_SPEC.format(name=name)
        started = time.perf_counter()
        response = http.post("/dli/api/v1/workflows", json={"spec": spec, "sql": None})
        post_s = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"POST /dli/api/v1/workflows answered {response.status_code}: {response.text[:500]}")
        visible = None
        try:
            while True:
                dag = http.get(f"/api/v2/dags/{name}")
                if dag.status_code == 200 and not dag.json().get("is_stale"):
                    if visible is None:
                        visible = time.perf_counter() - started
                    dry = http.post(f"/dli/api/v1/workflows/{name}/runs", json={"dry_run": True})
                    if dry.status_code == 200:
                        runnable = time.perf_counter() - started
                        break
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{name} not runnable {timeout:.0f} s after its registration "
                                       f"(last: dags {dag.status_code})")
                time.sleep(0.25)
        finally:
            gone = http.delete(f"/dli/api/v1/workflows/{name}")
            if gone.status_code != 200:
                result.errors.append(f"DELETE {name} answered {gone.status_code}: {gone.text[:200]}")
        reg.post.append(post_s)
        reg.visible.append(visible or runnable)
        reg.runnable.append(runnable)
        print(f"  register {name}: POST {post_s:.2f} s, visible {visible:.2f} s, runnable {runnable:.2f} s")
        # Let the removal reach Airflow before the next one, so each registration starts from the same state.
        until = time.monotonic() + 120
        while time.monotonic() < until:
            dag = http.get(f"/api/v2/dags/{name}")
            if dag.status_code == 404 or (dag.status_code == 200 and dag.json().get("is_stale")):
                break
            time.sleep(1)
        else:
            print(f"  note: {name} still listed 120 s after DELETE")
    result.register = reg


# --------------------------------------------------------------------------- one Airflow


def run_size(n: int, *, paging: bool, cli: bool, register: bool, args: argparse.Namespace) -> SizeResult:
    result = SizeResult(n)
    tmp = Path(tempfile.mkdtemp(prefix=f"dli-bench-plane-{n}-"))
    store, home = tmp / "store", tmp / "home"
    make_store(store, n)
    import_timeout = args.import_timeout
    if import_timeout is None and n > LARGE_STORE:
        import_timeout = DEFAULT_IMPORT_TIMEOUT
    if import_timeout:
        result.extra_env = {"AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(import_timeout),
                            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(import_timeout)}
    timeout = args.parse_timeout or 300 + 0.3 * n
    what = ", ".join(w for w, on in (("paging", paging), ("cold CLI", cli), ("register", register)) if on)
    print(f"\n== N = {fmt_n(n)}: {what} (home {home})")
    if result.extra_env:
        print(f"  with {' '.join(f'{k}={v}' for k, v in result.extra_env.items())} (one DAG file of {fmt_n(n)} "
              "specs outlasts Airflow's import timeouts)")
    started = time.monotonic()
    try:
        port = dev.free_port()
        try:
            status = dev.up(store=str(store), home=home, port=port, timeout=timeout, extra_env=result.extra_env)
        except Exception:
            sys.stderr.write(f"Airflow did not start; logs under {home}:\n{dev.log_tails(home, lines=40)}\n")
            raise
        result.up_s = time.monotonic() - started
        assert status.url and status.password
        print(f"  dev.up returned after {result.up_s:.1f} s (api-server {status.url}); waiting for {fmt_n(n)} DAGs")
        token = dev.get_token(status.url, status.username, status.password)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=status.url, headers=headers, timeout=300) as http:
            wait_parsed(http, n, started + timeout, started)
            listed_at = time.time()
            result.listed_s = time.monotonic() - started
            processor_start = process_start_epoch(home, "dag-processor")
            result.parsed_s = listed_at - processor_start if processor_start else None
            shown = f"{result.parsed_s:.1f} s after the dag-processor started, " if result.parsed_s else ""
            print(f"  all {fmt_n(n)} DAGs listed {shown}{result.listed_s:.1f} s after dev.up was called")
            result.settings = settings_in_force(home)
            print("  settings: " + ", ".join(f"{k}={v}" for k, (v, _) in result.settings.items()))
            steps = []
            if paging:
                steps.append(("paging", lambda: measure_paging(
                    http, result, args.repeat, result.settings["api.maximum_page_limit"][0])))
            if cli:
                steps.append(("cold CLI", lambda: measure_cli(
                    status.url, token, status.username, status.password, result, args.repeat, tmp)))
            if register:
                steps.append(("register", lambda: measure_register(http, result, args.register_repeat, 300)))
            for label, step in steps:
                if label == "cold CLI" and result.plane is None:
                    result.errors.append("cold CLI skipped: no plane paging time")
                    continue
                print(f"  measuring {label} ...")
                try:
                    step()
                except (httpx.HTTPError, RuntimeError, TimeoutError, ValueError, KeyError,
                        subprocess.TimeoutExpired) as exc:
                    result.errors.append(f"{label}: {type(exc).__name__}: {exc}")
                    print(f"  {label} FAILED: {type(exc).__name__}: {exc}")
    except (dev.DevError, TimeoutError, httpx.HTTPError) as exc:
        result.errors.append(f"Airflow: {type(exc).__name__}: {exc}")
        print(f"  FAILED: {type(exc).__name__}: {exc}")
    finally:
        with no_interrupts():
            print(f"  stopping Airflow (N = {fmt_n(n)}) ...")
            dev.down(home)
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    report_size(result, args)
    return result


# --------------------------------------------------------------------------- output


def report_size(result: SizeResult, args: argparse.Namespace) -> None:
    n = result.n
    print(f"\n-- N = {fmt_n(n)} datasets" + (f" (medians of {args.repeat})" if result.plane else ""))
    if result.listed_s is not None:
        parsed = f"{result.parsed_s:.1f} s after the dag-processor started; " if result.parsed_s else ""
        print(f"parse: all {fmt_n(n)} DAGs listed {parsed}dev.up {result.up_s:.1f} s, listed {result.listed_s:.1f} s "
              "after dev.up was called")
    if result.baseline and result.plane:
        print(f"Airflow's page: {result.max_page_note}")
        # seconds: median over the repeats of the summed request times; samples: each repeat (a SQLite lock
        # held by the dag-processor or scheduler stalls the api-server for seconds now and then: look here)
        print(f"{'':38} {'seconds':>8} {'requests':>9} {'page':>6} {'items':>7} {'first pass':>11}  samples")
        for p in (result.baseline, result.plane):
            print(f"{p.label:38} {p.seconds:8.3f} {p.requests:9d} {p.page:6d} {p.items:7d} {p.first:11.3f}  "
                  + " ".join(f"{s:.3f}" for s in p.samples))
        ratio = result.plane.seconds / result.baseline.seconds
        print(f"plane / baseline: {ratio:.2f} (target <= {PLANE_TARGET}: {verdict(ratio, PLANE_TARGET)})")
    if result.cli:
        c = result.cli
        print(f"cold CLI: dli --help {c.help_s:.3f} s; dli workflow list --format json {c.list_s:.3f} s with a "
              f"token ({c.password_list_s:.3f} s with a password); help + plane requests "
              f"{c.help_s + c.requests_s:.3f} s; importing what list imports (the CLI, the transport, httpx) alone {c.imports_s:.3f} s")
        print(f"list / (help + requests): {c.ratio:.2f} (target <= {CLI_TARGET}: {verdict(c.ratio, CLI_TARGET)})")
    if result.register and result.register.runnable:
        r = result.register
        print(f"register -> runnable ({plural(len(r.runnable), 'run')}): "
              + ", ".join(f"{s:.2f}" for s in r.runnable)
              + f" s; median {median(r.runnable):.2f} s (POST {median(r.post):.2f} s, DAG visible {median(r.visible):.2f} s)")
        for key, (value, where) in result.settings.items():
            print(f"  {key} = {value}  ({where})")
    for error in result.errors:
        print(f"ERROR: {error}")


def command_line(args: argparse.Namespace) -> str:
    if args.quick:
        return "python bench/plane.py --quick"
    parts = ["python bench/plane.py", f"--sizes {','.join(str(n) for n in args.sizes)}"]
    if args.repeat != 5:
        parts.append(f"--repeat {args.repeat}")
    if args.skip_register:
        parts.append("--skip-register")
    elif args.register_repeat != 3:
        parts.append(f"--register-repeat {args.register_repeat}")
    if args.import_timeout is not None:
        parts.append(f"--import-timeout {args.import_timeout}")
    return " ".join(parts)


def summary(results: list[SizeResult], args: argparse.Namespace) -> None:
    cmd = command_line(args)
    print("\n== summary: the lines a README would quote")
    print(f"(machine: {os.cpu_count()} cores; every figure from one run of `{cmd}`)")
    for r in results:
        if r.listed_s is not None:
            parsed = f"{r.parsed_s:.0f} s after the dag-processor started" if r.parsed_s else f"{r.listed_s:.0f} s"
            note = " (import timeouts raised)" if r.extra_env else ""
            print(f"- N={fmt_n(r.n)}: Airflow lists all {fmt_n(r.n)} DAGs {parsed}{note}  [{cmd}]")
    for r in results:
        if r.baseline and r.plane:
            ratio = r.plane.seconds / r.baseline.seconds
            print(f"- N={fmt_n(r.n)}: all workflows: Airflow /api/v2/dags {r.baseline.seconds:.3f} s in "
                  f"{plural(r.baseline.requests, 'request')} of {r.baseline.page}; dli /dli/api/v1/workflows "
                  f"{r.plane.seconds:.3f} s in {plural(r.plane.requests, 'request')} of {r.plane.page}; plane/baseline "
                  f"{ratio:.2f} (target <= {PLANE_TARGET}: {verdict(ratio, PLANE_TARGET)}; medians of {args.repeat})"
                  f"  [{cmd}]")
    for r in results:
        if r.cli:
            c = r.cli
            print(f"- N={fmt_n(r.n)}: cold `dli workflow list --format json` {c.list_s:.2f} s (DLI_AIRFLOW_TOKEN; "
                  f"{c.password_list_s:.2f} s with a password) vs `dli --help` {c.help_s:.2f} s + requests "
                  f"{c.requests_s:.2f} s: {c.ratio:.2f} (target <= {CLI_TARGET}: {verdict(c.ratio, CLI_TARGET)}); "
                  f"imports alone {c.imports_s:.2f} s  [{cmd}]")
    for r in results:
        if r.register and r.register.runnable:
            s = r.settings
            print(f"- N={fmt_n(r.n)}: register -> runnable median {median(r.register.runnable):.1f} s "
                  f"({plural(len(r.register.runnable), 'run')}; dag-processor refresh_interval="
                  f"{s['dag_processor.refresh_interval'][0]} s, min_file_process_interval="
                  f"{s['dag_processor.min_file_process_interval'][0]} s, as dev.up sets them)  [{cmd}]")
    failed = [f"N={fmt_n(r.n)}: {e}" for r in results for e in r.errors]
    if failed:
        print("not measured / problems:")
        for line in failed:
            print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="dataset counts, comma-separated (default 1000,10000)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats of each paging and CLI measurement")
    parser.add_argument("--register-repeat", type=int, default=3, help="registrations per size")
    parser.add_argument("--skip-register", action="store_true", help="no register measurement (no size-10 Airflow)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke: N=20 only, repeat 2, 1 registration; CLI and register measured at 20")
    parser.add_argument("--import-timeout", type=int, default=None,
                        help=f"[core] dagbag_import_timeout and [dag_processor] dag_file_processor_timeout, seconds "
                        f"(default: Airflow's up to {LARGE_STORE} datasets, {DEFAULT_IMPORT_TIMEOUT} above)")
    parser.add_argument("--parse-timeout", type=float, default=None,
                        help="seconds to wait for Airflow and all DAGs (default 300 + 0.3 s per dataset)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and homes")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat, args.register_repeat = [20], 2, 1
        cli_sizes, register_sizes = {20}, set() if args.skip_register else {20}
    else:
        args.sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
        cli_sizes = {CLI_SIZE} & set(args.sizes)
        register_sizes = set() if args.skip_register else {10} | ({CLI_SIZE} & set(args.sizes))
    if any(n < 1 for n in args.sizes) or args.repeat < 1 or args.register_repeat < 1:
        parser.error("sizes and repeats must be positive")
    signal.signal(signal.SIGTERM, _sigterm)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    print(f"bench/plane.py: sizes {', '.join(fmt_n(n) for n in args.sizes)}; repeat {args.repeat}; "
          f"cold CLI at {sorted(cli_sizes) or 'none'}; register at {sorted(register_sizes) or 'none'} "
          f"({args.register_repeat} each); Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    results = []
    try:
        for n in sorted(set(args.sizes) | register_sizes):
            results.append(run_size(n, paging=n in args.sizes, cli=n in cli_sizes, register=n in register_sizes,
                                    args=args))
    except KeyboardInterrupt:
        print("\ninterrupted: every Airflow started was stopped", file=sys.stderr)
        summary(results, args)
        return 130
    summary(results, args)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
