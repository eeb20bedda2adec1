"""The service's commands: `serve`, `admin`, `agent`, `submit`, `jobs`, `job`, `logs`, `cancel`, `bill`.

Thin: parse, call the library (suanli.service, suanli.agent), render. A user's mistake is one
line on stderr and exit code 2. Mounted on the main CLI by `register_service_commands(app)` and
`app.add_typer(admin_app, name="admin")`; `python -m suanli.cli_service` runs them alone.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from suanli.errors import UserError

out = Console()
if not out.is_terminal:
    out = Console(width=120, color_system=None)
err = Console(stderr=True)

DbOpt = Annotated[str | None, typer.Option("--db", help="database URL (default: sqlite in $SUANLI_DATA_DIR, "
                                                         "else ~/.local/share/suanli/suanli.db)")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="server URL (default: $SUANLI_URL or the config file)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token (default: $SUANLI_TOKEN or the config file)")]


def _no_flag_metavar() -> None:
    """Typer's help shows a type column (`<int>`, `<str>`) beside each option; for a flag
    (`--json`, `--preempt/--no-preempt`) that takes no value it showed `<bool>`, which reads as if
    a value were wanted. Flags show none (every command of `suanli`: it imports this module)."""
    from typer.core import TyperOption
    if getattr(TyperOption.display_type_rich, "_suanli", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)
    display_type_rich._suanli = True
    TyperOption.display_type_rich = display_type_rich


_no_flag_metavar()


def _fail(e: UserError) -> typer.Exit:
    err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


# ----------------------------------------------------------------------------- serve
def parse_listen(text: str, flag: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or PORT alone (on 127.0.0.1: only this machine may scrape)."""
    raw = text.strip()
    host, sep, port = raw.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", raw
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    bare_v6 = ":" in host and not raw.startswith("[")        # ::1:80 is ambiguous: [::1]:80
    if not port.isdigit() or not 0 < int(port) <= 65535 or (sep and not host) or bare_v6:
        raise UserError(f"{flag}: expected HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:9464), got {text!r}")
    return host, int(port)


def serve(network: Annotated[str, typer.Option("--network", help="the network file: a scenario without jobs")],
          db: DbOpt = None,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
          policy: Annotated[str, typer.Option(help="the scheduling policy (as in `suanli sim`)")] = "suanli",
          tick_s: Annotated[float, typer.Option("--tick-s", help="seconds between controller ticks")] = 1.0,
          heartbeat_timeout_s: Annotated[float | None, typer.Option(
              "--heartbeat-timeout-s", help="a site is down (its running jobs re-placed) after this many seconds "
                                            "without a heartbeat; long, as a site wrongly declared down runs its "
                                            "jobs twice (default: 30)")] = None,
          heartbeat_s: Annotated[float, typer.Option("--heartbeat-s", help="the agents' heartbeat interval "
                                                                             "(their --interval-s)")] = 1.0,
          missed_heartbeats: Annotated[int | None, typer.Option(
              "--missed-heartbeats", help="older form of --heartbeat-timeout-s: down after this many "
                                          "--heartbeat-s intervals without a heartbeat")] = None,
          max_agent_losses: Annotated[int, typer.Option(
              "--max-agent-losses", help="a job lost with this many agent restarts (each agent that claimed it "
                                         "died) is quarantined: FAILED, not dispatched again; 0: never")] = 2,
          log_format: Annotated[str, typer.Option("--log-format", help="text or json (one object per line)")] = "text",
          log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")] = "info",
          checkpoint_store: Annotated[str | None, typer.Option(
              "--checkpoint-store", help="directory of the jobs' stored checkpoints (replicas share it; default: "
                                         "beside the SQLite file, else $SUANLI_DATA_DIR/checkpoints)")] = None,
          rate_limit: Annotated[str, typer.Option("--rate-limit", help="requests per token (tenant, agent, admin): "
                                                  "20/s, 600/min or off; over it: 429 with Retry-After")] = "100/s",
          max_in_flight: Annotated[int, typer.Option("--max-in-flight", help="requests in the handlers at once "
                                                     "(half of them one caller's); more: 503 with Retry-After")] = 16,
          max_attempts: Annotated[int, typer.Option("--max-attempts", help="a job whose runs fail (non-zero exit) "
                                                     "this many times is FAILED; before that it runs again")] = 3,
          preempt: Annotated[bool, typer.Option("--preempt/--no-preempt", help="let the policy stop a running job "
                                                "(its checkpoints kept) for one that would be late")] = True,
          suspend: Annotated[bool, typer.Option("--suspend/--no-suspend", help="follow plans in pieces and planned "
                                                "stops: a checkpointing job may be stopped in dear or dirty hours, "
                                                "or at the end of a booking for its predicted length, and resumed "
                                                "from its checkpoint")] = True,
          checkpoint_quota_bytes: Annotated[int | None, typer.Option(
              "--checkpoint-quota-bytes", help="the checkpoint store's bytes per tenant, all its jobs together; "
                                               "an upload past it is refused (507). Default: no limit")] = None,
          checkpoint_keep_h: Annotated[float, typer.Option(
              "--checkpoint-keep-h", help="hours a job's stored checkpoint is kept after the job ended")] = 24.0,
          overrun_margin: Annotated[float, typer.Option(
              "--overrun-margin", help="a run past its planned end by this fraction of its estimate (and "
                                       "--overrun-min-s) is re-priced against its tenant's budget: extended by "
                                       "one estimate if it fits, else stopped")] = 0.5,
          overrun_min_s: Annotated[float, typer.Option(
              "--overrun-min-s", help="the least margin past a run's planned end, in seconds")] = 60.0,
          meter_retention_days: Annotated[int, typer.Option(
              "--meter-retention-days", help="days the sites' raw meter readings are kept (their hourly "
                                             "roll-ups are kept for good)")] = 35,
          metrics_listen: Annotated[str | None, typer.Option(
              "--metrics-listen", help="HOST:PORT (or PORT: on 127.0.0.1) where GET /metrics is served for "
                                       "Prometheus without a token; keep it private. The API's own /metrics "
                                       "takes an admin token. Default: off")] = None,
          ) -> None:
    """Run the control plane: REST API under /v1 and the controller loop."""
    from suanli.logs import configure
    from suanli.service import limits
    from suanli.service.server import BindError
    from suanli.service.server import serve as run_server
    try:
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise UserError(f"--log-level: {log_level!r} is not one of debug, info, warning, error")
        configure(log_format, log_level.upper())
        limits.DEFAULT.rate_per_s = limits.parse_rate(rate_limit)    # read when the app is built
        limits.set_in_flight(limits.DEFAULT, max_in_flight)
        if not 0 <= port <= 65535:
            raise UserError(f"--port: must be between 0 and 65535, got {port}")
        if not tick_s > 0:
            raise UserError(f"--tick-s: must be > 0, got {tick_s}")
        if not heartbeat_s > 0:
            raise UserError(f"--heartbeat-s: must be > 0, got {heartbeat_s}")
        if missed_heartbeats is not None:
            if missed_heartbeats < 1:
                raise UserError(f"--missed-heartbeats: must be >= 1, got {missed_heartbeats}")
            if heartbeat_timeout_s is not None:
                raise UserError("--missed-heartbeats: give it or --heartbeat-timeout-s, not both")
            heartbeat_timeout_s = missed_heartbeats * heartbeat_s
        if heartbeat_timeout_s is not None and not (math.isfinite(heartbeat_timeout_s) and heartbeat_timeout_s > 0):
            raise UserError(f"--heartbeat-timeout-s: must be > 0, got {heartbeat_timeout_s}")
        if heartbeat_timeout_s is not None and heartbeat_timeout_s < 3 * heartbeat_s:
            logging.getLogger("suanli.serve").warning(
                "--heartbeat-timeout-s %g is less than 3 heartbeat intervals (%g s): a site whose heartbeats are "
                "late will be taken for dead and its jobs will run twice", heartbeat_timeout_s, heartbeat_s)
        if max_attempts < 1:
            raise UserError(f"--max-attempts: must be >= 1, got {max_attempts}")
        if max_agent_losses < 0:
            raise UserError(f"--max-agent-losses: must be >= 0, got {max_agent_losses}")
        if checkpoint_quota_bytes is not None and checkpoint_quota_bytes < 0:
            raise UserError(f"--checkpoint-quota-bytes: must be >= 0, got {checkpoint_quota_bytes}")
        if not checkpoint_keep_h >= 0:
            raise UserError(f"--checkpoint-keep-h: must be >= 0, got {checkpoint_keep_h}")
        if not 0 <= overrun_margin < float("inf"):
            raise UserError(f"--overrun-margin: must be >= 0, got {overrun_margin}")
        if not 0 <= overrun_min_s < float("inf"):
            raise UserError(f"--overrun-min-s: must be >= 0, got {overrun_min_s}")
        if not 1 <= meter_retention_days <= 36600:
            raise UserError(f"--meter-retention-days: a number of days from 1 to 36600, got {meter_retention_days}")
        listen = parse_listen(metrics_listen, "--metrics-listen") if metrics_listen is not None else None
        run_server(network, db, host, port, policy, tick_s, heartbeat_timeout_s=heartbeat_timeout_s,
                   metrics_listen=listen,
                   checkpoint_store=checkpoint_store, max_attempts=max_attempts, preempt=preempt,
                   max_agent_losses=max_agent_losses,
                   checkpoint_quota_bytes=checkpoint_quota_bytes, checkpoint_keep_h=checkpoint_keep_h,
                   overrun_margin=overrun_margin, overrun_min_s=overrun_min_s,
                   meter_retention_days=meter_retention_days, suspend=suspend)
    except BindError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(3) from None
    except UserError as e:
        raise _fail(e) from None


# ----------------------------------------------------------------------------- admin
admin_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Operator commands on the database: tenants and tokens. Each prints the new "
                             "token once, and nothing else.")


def _admin(db: str | None, make) -> None:
    from suanli.service.db import open_db
    try:
        sessions = open_db(db)
        with sessions.begin() as s:
            token = make(s)
    except UserError as e:
        raise _fail(e) from None
    print(token)


@admin_app.command("create-tenant")
def create_tenant(name: Annotated[str, typer.Argument(help="the tenant's name")],
                  quota: Annotated[str | None, typer.Option(help="GPUs per type, e.g. h100=64,a800=16 "
                                                                "(default: no limit)")] = None,
                  budget_cny: Annotated[float | None, typer.Option("--budget-cny", help="CNY per month")] = None,
                  max_wait_h: Annotated[float | None, typer.Option(
                      "--max-wait-h", help="Hours a job of the tenant that gives no max_wait_h may wait for a "
                                           "cheaper start (default: 0, start as soon as it can).")] = None,
                  db: DbOpt = None) -> None:
    """Create a tenant; prints its token."""
    from suanli.service.auth import create_tenant as make
    from suanli.service.auth import parse_quota
    try:
        q = parse_quota(quota)
    except UserError as e:
        raise _fail(e) from None
    _admin(db, lambda s: make(s, name, q, budget_cny, max_wait_h))


@admin_app.command("create-site-token")
def create_site_token(site: Annotated[str, typer.Argument(help="the site id (as in the network file)")],
                      network: Annotated[str | None, typer.Option(
                          help="Check SITE against this network file (default: against the sites the database "
                               "knows: the served network's, registered agents', other site tokens').")] = None,
                      db: DbOpt = None) -> None:
    """A token for the agent of one site; prints it."""
    from suanli.service.auth import create_site_token as make
    from suanli.service.server import known_sites, load_network
    try:
        net = load_network(network) if network else None
    except UserError as e:
        raise _fail(e) from None

    def checked(s):
        if net is None:                 # the sites the database knows (the served network's, agents', tokens')
            known = known_sites(s)
            if not known:
                raise UserError(f"SITE: the database knows no sites yet to check {site!r} against (`suanli serve` "
                                "records its network's when it starts): give --network FILE")
            if site not in known:
                raise UserError(f"SITE: unknown site {site!r} (sites: {', '.join(known)})")
        return make(s, site, net)
    _admin(db, checked)


@admin_app.command("create-admin-token")
def create_admin_token(db: DbOpt = None) -> None:
    """A token for the operator; prints it."""
    from suanli.service.auth import create_admin_token as make
    _admin(db, make)


@admin_app.command("drain")
def drain(site: Annotated[str, typer.Argument(help="the site id")],
          undo: Annotated[bool, typer.Option("--undo", help="take placements on SITE again")] = False,
          db: DbOpt = None) -> None:
    """Drain a site: no new placements there (undispatched ones are offered again); its running
    jobs finish. `--undo` ends the drain."""
    from suanli.service.controller import set_drain
    from suanli.service.db import open_db
    try:
        sessions = open_db(db)
        with sessions.begin() as s:
            set_drain(s, site, not undo)
    except UserError as e:
        raise _fail(e) from None
    print(f"{site}\t{'undrained' if undo else 'drained'}")


@admin_app.command("grid-cap")
def grid_cap(site: Annotated[str, typer.Argument(help="the site id")],
             max_kw: Annotated[float, typer.Option("--max-kw", help="the most the site may draw from the grid, kW")],
             hours: Annotated[float, typer.Option("--hours", help="how long the cap lasts")],
             start: Annotated[str | None, typer.Option("--start", help="when it begins (ISO 8601; now)")] = None,
             reason: Annotated[str, typer.Option("--reason", help="shown with the notice")] = "",
             db: DbOpt = None) -> None:
    """Announce a demand-response notice: SITE draws at most --max-kw from the grid for --hours
    from --start. The scheduler plans around it from now on (excess priced at the objective's
    dr_cny_per_kwh). Prints the notice's id, start and end in controller hours."""
    from datetime import UTC, datetime

    from suanli.service.db import epoch, open_db
    from suanli.service.models import GridCap
    try:
        if not max_kw >= 0:
            raise UserError(f"--max-kw: must be >= 0, got {max_kw}")
        if not hours > 0:
            raise UserError(f"--hours: must be > 0, got {hours}")
        try:
            when = datetime.fromisoformat(start) if start else datetime.now(UTC)
        except ValueError:
            raise UserError(f"--start: not an ISO 8601 time: {start!r}") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        sessions = open_db(db)
        t0 = (when - epoch(sessions)).total_seconds() / 3600.0
        with sessions.begin() as s:
            row = GridCap(site=site, start_h=t0, end_h=t0 + hours, max_grid_kw=max_kw, reason=reason)
            s.add(row)
            s.flush()
            print(f"{row.id}\t{site}\t{row.start_h:.4f}\t{row.end_h:.4f}\t{max_kw:g} kW")
    except UserError as e:
        raise _fail(e) from None


# ----------------------------------------------------------------------------- agent
def _agent_token(token_file: str | None) -> str:
    """The site's token: from `--token-file` (readable by its owner only) or `$SUANLI_AGENT_TOKEN`,
    which is then removed from the environment (nothing the agent starts inherits it)."""
    import os
    import stat
    env = os.environ.pop("SUANLI_AGENT_TOKEN", None)
    if token_file is not None and env is not None:
        raise UserError("--token-file and $SUANLI_AGENT_TOKEN both give a token: give one")
    if token_file is None:
        if not env or not env.strip():
            raise UserError("no site token: give --token-file PATH (a file readable only by its owner: chmod 600) "
                            "or set $SUANLI_AGENT_TOKEN")
        return env.strip()
    try:
        with open(token_file, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"--token-file {token_file}: not a regular file")
            if st.st_mode & 0o077:
                raise UserError(f"--token-file {token_file}: other users may read it (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {token_file}")
            token = f.read().decode("utf-8", errors="replace").strip()
    except OSError as e:
        raise UserError(f"--token-file {token_file}: {e.strerror}") from None
    if not token:
        raise UserError(f"--token-file {token_file}: empty")
    return token


def agent(site: Annotated[str, typer.Option("--site", help="this site's id")],
          controller: Annotated[str | None, typer.Option("--controller", help="the server URL")] = None,
          token_file: Annotated[str | None, typer.Option(
              "--token-file", help="a file holding the site's token, readable only by its owner (chmod 600); "
                                   "or set $SUANLI_AGENT_TOKEN. Never on the command line")] = None,
          token: Annotated[str | None, typer.Option("--token", hidden=True)] = None,
          executor: Annotated[str, typer.Option(help="how jobs run: local (subprocesses), slurm "
                                                     "(sbatch) or ray (Ray jobs); docs/SITES.md")] = "local",
          workdir: Annotated[str | None, typer.Option(help="where jobs run and checkpoint")] = None,
          interval_s: Annotated[float, typer.Option("--interval-s", help="seconds between polls")] = 1.0,
          checkpoint_dir: Annotated[str | None, typer.Option(
              "--checkpoint-dir", help="checkpoints in DIR/<job id>: give every site's agent the same shared "
                                       "directory and a re-placed job resumes from its checkpoint")] = None,
          partition: Annotated[str | None, typer.Option(
              help="slurm: the partition that is this site (default: the site's id)")] = None,
          ray_address: Annotated[str | None, typer.Option(
              "--ray-address", help="ray: the head's dashboard URL, e.g. http://127.0.0.1:8265")] = None,
          job_env: Annotated[list[str] | None, typer.Option(
              "--job-env", help="a variable of the agent's environment to pass to jobs too (repeatable); jobs get "
                                "only PATH, LANG, LC_*, TZ, TERM and suanli's own otherwise")] = None,
          job_uid_base: Annotated[int, typer.Option(
              "--job-uid-base", help="local, agent run as root: a job runs as uid = gid = this + its tenant's id "
                                     "(no /etc/passwd entry needed)")] = 2_000_000,
          jobs_as_agent_user: Annotated[bool, typer.Option(
              "--jobs-as-agent-user", help="local: run jobs as the agent's own user even when it is root: NO "
                                           "isolation between tenants (a site with one trusted tenant)")] = False,
          max_checkpoint_bytes: Annotated[str, typer.Option(
              "--max-checkpoint-bytes", help="the largest checkpoint packed (the sum of its files' sizes) or "
                                             "fetched (downloaded, and unpacked), e.g. 16GiB")] = "16GiB",
          checkpoint_timeout_s: Annotated[float, typer.Option(
              "--checkpoint-timeout-s", help="the longest time to pack and upload, or fetch and unpack, one "
                                             "checkpoint")] = 600.0,
          meter: Annotated[list[str] | None, typer.Option(
              "--meter", help="a meter source (repeatable): csv:PATH[,speed=F][,shift=now], prometheus:URL[,it=M]"
                              "[,facility=M][,pue=F], modbus:HOST[:PORT][,unit=N][,capacity_kwh=F], nvml[,pue=F]; "
                              "the readings go to the controller (docs/SITES.md, Meters)")] = None,
          meter_interval_s: Annotated[float, typer.Option(
              "--meter-interval-s", help="seconds between meter readings")] = 15.0,
          gpus: Annotated[int | None, typer.Option(
              "--gpus", help="local: this host's GPUs (default: as many as NVML counts, else the site's pools); "
                             "each job gets distinct indices of them in CUDA_VISIBLE_DEVICES")] = None,
          log_format: Annotated[str, typer.Option("--log-format", help="text or json (one object a line)")] = "text",
          log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
          ) -> None:
    """Run a site agent: register, heartbeat, pull assignments, run them, report; read its meters."""
    import os

    from suanli import logs
    from suanli.agent.agent import Agent
    from suanli.agent.checkpoints import parse_size
    from suanli.agent.executors.base import JobPolicy
    try:
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise UserError(f"--log-level: {log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        logs.configure(log_format, log_level.upper())
        for name in ("httpx", "httpcore"):          # a line per request: the agent logs its own decisions
            logging.getLogger(name).setLevel(logging.WARNING)
        if token is not None:
            raise UserError("--token: a token on a command line can be read by every process of the machine "
                            "(/proc/PID/cmdline): put it in a file readable only by its owner (--token-file PATH, "
                            "chmod 600) or in $SUANLI_AGENT_TOKEN")
        site_token = _agent_token(token_file)
        if not interval_s > 0:
            raise UserError(f"--interval-s: must be > 0, got {interval_s}")
        if not checkpoint_timeout_s > 0:
            raise UserError(f"--checkpoint-timeout-s: must be > 0, got {checkpoint_timeout_s}")
        if not (math.isfinite(meter_interval_s) and 0.05 <= meter_interval_s <= 3600):
            raise UserError(f"--meter-interval-s: must lie in [0.05, 3600], got {meter_interval_s}")
        meters = None
        if meter:
            from suanli.agent.meters import open_sources
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)   # its own lines per failed request
            meters = open_sources(meter)          # a bad SPEC, an unreadable CSV, NVML without a GPU: exit 2
        policy = JobPolicy(tuple(job_env or ()), job_uid_base, jobs_as_agent_user)
        os.umask(0o077)                  # what the agent writes is its own unless it says otherwise
        try:
            a = Agent(site, controller, site_token, executor, workdir, interval_s, checkpoint_dir, partition,
                      ray_address, parse_size(max_checkpoint_bytes), checkpoint_timeout_s, policy=policy,
                      meter=meters, meter_interval_s=meter_interval_s, gpus=gpus)
        except BaseException:
            if meters is not None:
                meters.close()
            raise
        a.run()
    except UserError as e:
        raise _fail(e) from None


# ----------------------------------------------------------------------------- client
def _client(url, token):
    from suanli.service.client import Client
    return Client(url, token)


def _read_job(path: str) -> dict:
    from suanli.errors import ScenarioError
    from suanli.model.load import read_document
    try:
        return read_document(path)
    except ScenarioError as e:
        raise UserError(str(e)) from None


def submit(file: Annotated[str, typer.Argument(help="a job: YAML or JSON (name, command, gpus, work_h, origin...); "
                                                   "or a mapping `jobs: [...]` of many, sent as batches")],
           key: Annotated[str | None, typer.Option("--key", help="idempotency key: a retry with the same key "
                                                               "never creates a second job (a list: KEY-0, KEY-1, "
                                                               "... unless a job has its own `key`)")] = None,
           quote: Annotated[bool, typer.Option("--quote", help="Print what the job would cost and when it would "
                                                "start, now and if it may wait (POST /v1/quotes), instead of "
                                                "submitting it.")] = False,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a job, or a list of jobs (POST /v1/jobs/batch, 1,000 at a time); prints each id."""
    try:
        body = _read_job(file)
        c = _client(url, token)
        if quote:
            if set(body) == {"jobs"}:
                raise UserError("--quote: one job at a time, not a list of jobs")
            _print_quote(c.call("POST", "/v1/quotes", json={k: v for k, v in body.items() if k != "key"}))
            return
        many = body.get("jobs") if set(body) == {"jobs"} else None
        if isinstance(many, list):
            items = [dict(j, key=j.get("key", f"{key}-{i}")) if key and isinstance(j, dict) else j
                     for i, j in enumerate(many)]
            done_jobs = []
            for start in range(0, len(items), 1000):
                done_jobs += c.call("POST", "/v1/jobs/batch", json={"jobs": items[start:start + 1000]})["jobs"]
        else:
            headers = {"Idempotency-Key": key} if key else {}
            done_jobs = [c.call("POST", "/v1/jobs", json=body, headers=headers)]
    except UserError as e:
        raise _fail(e) from None
    for job in done_jobs:
        out.print(f"{job['id']}\t{job['state']}", markup=False, highlight=False)


def _print_quote(q: dict) -> None:
    if q.get("refused"):
        err.print(f"warning: a submit of this job would be refused now: {q['refused']}", markup=False,
                  highlight=False, soft_wrap=True)
    t = Table(title=f"quote ({q['policy']}, at {q['now_h']:.4f} h)", title_justify="left")
    for col in ("may wait", "site", "GPU type", "start (UTC)", "in", "end h", "cost CNY", "kg CO2e", "note"):
        t.add_column(col, justify="right" if col in ("may wait", "in", "end h", "cost CNY", "kg CO2e") else "left")
    for o in q["options"]:
        wait = "now" if o["max_wait_h"] == 0 else f"{o['max_wait_h']:g} h"
        if not o["placed"]:
            t.add_row(wait, "-", "-", "-", "-", "-", "-", "-", o["reason"])
            continue
        t.add_row(wait, o["site"], o["gpu_type"], o["start"][:19], f"{max(o['start_h'] - q['now_h'], 0.0):,.2f} h",
                  f"{o['end_h']:.4f}", f"{o['cost_cny']:,.4f}", f"{o['carbon_kg']:,.4f}",
                  o["reason"] if "(as with" in o["reason"] else "")
    out.print(t)


def jobs(state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
         limit: Annotated[int, typer.Option(help="jobs per page")] = 100,
         as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
         url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List your jobs (all pages)."""
    try:
        c = _client(url, token)
        rows, cursor = [], None
        while True:
            params = {"limit": limit, **({"state": state} if state else {}), **({"cursor": cursor} if cursor else {})}
            page = c.call("GET", "/v1/jobs", params=params)
            rows += page["jobs"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    except UserError as e:
        raise _fail(e) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(show_header=True, header_style="bold")
    for col in ("id", "name", "tenant", "state", "site", "GPUs", "cost CNY", "reason"):
        t.add_column(col)
    for j in rows:
        t.add_row(str(j["id"]), j["name"], j["tenant"], j["state"], j["site"] or "",
                  f"{j['gpus']} {j['gpu_type'] or ''}".strip(), f"{j['usage']['total_cny']:,.2f}",
                  j["reason"])
    out.print(t)


def job(job_id: Annotated[int, typer.Argument(help="the job's id")],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one job: state, placement, explanation, usage and its lifecycle."""
    try:
        j = _client(url, token).call("GET", f"/v1/jobs/{job_id}")
    except UserError as e:
        raise _fail(e) from None
    if as_json:
        print(json.dumps(j, indent=2))
        return
    u = j["usage"]
    t = Table(show_header=False, title=f"job {j['id']}: {j['name']} ({j['tenant']})", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("state", f"{j['state']}  {j['reason']}")
    t.add_row("placement", f"{j['site'] or '-'} / {j['gpu_type'] or '-'}" + (
        f"  [{j['start_h']:.4f} h, {j['end_h']:.4f} h)" if j["start_h"] is not None else ""))
    t.add_row("usage", f"{u['gpu_seconds'] / 3600:,.4f} GPU-h, {u['energy_kwh']:,.3f} kWh, "
              f"{u['carbon_kg']:,.3f} kg CO2e")
    t.add_row("cost so far", f"{u['total_cny']:,.2f} CNY (GPU {u['gpu_cny']:,.2f}, energy {u['energy_cny']:,.2f}, "
              f"transfer {u['transfer_cny']:,.2f})")
    if j.get("checkpoint_h") is not None:
        t.add_row("checkpoint", f"at {j['checkpoint_h']:.4f} h, {j['checkpoint_bytes'] or 0:,} bytes")
    e = j["explanation"] or {}
    if e.get("chosen"):
        c = e["chosen"]
        t.add_row("why", f"{e.get('policy')}: {c['site']}/{c['gpu_type']} total {c['total']:,.2f} CNY "
                  + ", ".join(f"{k} {v:,.2f}" for k, v in c["parts"].items()))
    elif e:
        t.add_row("why", e.get("reason", ""))
    out.print(t)
    for o in j.get("outputs") or []:       # below the table, whole: a path cut into a cell's lines cannot be copied
        out.print(f"output (run {o['fence']}): {o['site']}:{o['path']}  {o['size_bytes']:,} bytes"
                  + (f", the service holds the last {o['kept_bytes']:,}" if o["kept_bytes"] < o["size_bytes"] else "")
                  + f"  (suanli logs {j['id']})", highlight=False, markup=False, soft_wrap=True)
    lt = Table(title="lifecycle", title_justify="left")
    for col in ("at (UTC)", "h", "from", "to", "reason"):
        lt.add_column(col)
    for tr in j["transitions"]:
        lt.add_row(tr["at"][:19], f"{tr['at_h']:.4f}", tr["from_state"] or "", tr["to_state"], tr["reason"])
    out.print(lt)


def logs(job_id: Annotated[int, typer.Argument(help="the job's id")],
         fence: Annotated[int | None, typer.Option(help="the run (its dispatch fence, as `suanli job` lists "
                                                        "them); default the last")] = None,
         url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print a job's output (stdout and stderr) as its site's agent uploaded it: the last MiB of a
    run, when it ended (and every 30 s while it runs). Where the file lies goes to stderr."""
    try:
        got = _client(url, token).call("GET", f"/v1/jobs/{job_id}/logs",
                                       params={"fence": fence} if fence is not None else None)
    except UserError as e:
        raise _fail(e) from None
    if got["fence"] is None:
        err.print(f"job {job_id}: no output yet (no run has started)")
        return
    run = next(r for r in got["runs"] if r["fence"] == got["fence"])
    err.print(f"job {job_id}, run {run['fence']}: {run['site']}:{run['path']}, {run['size_bytes']:,} bytes"
              + (f"; the last {run['kept_bytes']:,} follow" if got["truncated"] else ""),
              highlight=False, markup=False, soft_wrap=True)      # a path is never cut at the width, nor read as markup
    sys.stdout.write(got["text"])
    sys.stdout.flush()


def cancel(job_id: Annotated[int, typer.Argument(help="the job's id")],
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job (a running one is stopped by its agent)."""
    try:
        j = _client(url, token).call("DELETE", f"/v1/jobs/{job_id}")
    except UserError as e:
        raise _fail(e) from None
    out.print(f"{j['id']}\t{j['state']}", markup=False, highlight=False)


def bill(tenant: Annotated[str, typer.Argument(help="the tenant's name")],
         month: Annotated[str | None, typer.Option("--month", help="YYYY-MM (UTC); default: this month")] = None,
         fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
         db: DbOpt = None) -> None:
    """A tenant's invoice for a month, from the usage ledger (priced by suanli.accounting)."""
    from sqlalchemy import select

    from suanli.service import metering
    from suanli.service.db import open_db
    from suanli.service.models import Tenant
    try:
        if fmt not in ("table", "json", "csv"):
            raise UserError(f"--format: choose table, json or csv (got {fmt!r})")
        if month is None:
            from datetime import UTC, datetime
            month = datetime.now(UTC).strftime("%Y-%m")
        metering.check_month(month)
        sessions = open_db(db)
        with sessions() as s:
            t = s.scalar(select(Tenant).where(Tenant.name == tenant))
            if t is None:
                raise UserError(f"TENANT: no tenant {tenant!r}")
            inv = metering.invoice(s, t, month)
    except UserError as e:
        raise _fail(e) from None
    if fmt == "json":
        print(inv.model_dump_json(indent=2))
    elif fmt == "csv":
        print(metering.invoice_csv(inv), end="")
    else:
        tb = Table(title=f"invoice {inv.tenant} {inv.month}", title_justify="left")
        for col in ("job", "name", "site", "type", "GPU-h", "kWh", "energy", "kg CO2e", "GPU CNY", "energy CNY",
                    "transfer CNY", "total CNY"):
            tb.add_column(col, justify="right" if col not in ("name", "site", "type", "energy") else "left")
        for ln in inv.lines:
            basis = ln.energy_basis + (" (true-up)" if ln.kind == "true-up" else "")
            tb.add_row(str(ln.job_id), ln.name, ln.site, ln.gpu_type, f"{ln.gpu_h:,.4f}", f"{ln.energy_kwh:,.3f}",
                       basis, f"{ln.carbon_kg:,.3f}", f"{ln.gpu_cny:,.2f}", f"{ln.energy_cny:,.2f}",
                       f"{ln.transfer_cny:,.2f}", f"{ln.total_cny:,.2f}")
        tb.add_row("total", "", "", "", f"{inv.gpu_h:,.4f}", f"{inv.energy_kwh:,.3f}", "", f"{inv.carbon_kg:,.3f}",
                   f"{inv.gpu_cny:,.2f}", f"{inv.energy_cny:,.2f}", f"{inv.transfer_cny:,.2f}",
                   f"{inv.total_cny:,.2f}", style="bold")
        out.print(tb)


def register_service_commands(app: typer.Typer) -> None:
    """Add serve, agent, submit, jobs, job, logs, cancel and bill to `app`."""
    for fn in (serve, agent, submit, jobs, job, logs, cancel, bill):
        app.command(fn.__name__)(fn)


agent_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
agent_app.command()(agent)

main_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       help="suanli's service commands (also mounted on `suanli`).")
register_service_commands(main_app)
main_app.add_typer(admin_app, name="admin")

if __name__ == "__main__":
    main_app()
