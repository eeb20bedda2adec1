"""The service's commands: `serve`, `admin`, `agent`, `submit`, `jobs`, `job`, `cancel`, `bill`.

Thin: parse, call the library (suanli.service, suanli.agent), render. A user's mistake is one
line on stderr and exit code 2. Mounted on the main CLI by `register_service_commands(app)` and
`app.add_typer(admin_app, name="admin")`; `python -m suanli.cli_service` runs them alone.
"""

from __future__ import annotations

import json
import logging
import math
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


def _fail(e: UserError) -> typer.Exit:
    err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


# ----------------------------------------------------------------------------- serve
def serve(network: Annotated[str, typer.Option("--network", help="the network file: a scenario without jobs")],
          db: DbOpt = None,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
          policy: Annotated[str, typer.Option(help="the scheduling policy (as in `suanli sim`)")] = "suanli",
          tick_s: Annotated[float, typer.Option("--tick-s", help="seconds between controller ticks")] = 1.0,
          heartbeat_timeout_s: Annotated[float | None, typer.Option(
              "--heartbeat-timeout-s", help="a site is down (its running jobs re-placed) after this many seconds "
                                            "without a heartbeat; long, as a site wrongly declared down runs its "
                                            "jobs twice [default: 30]")] = None,
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
          max_attempts: Annotated[int, typer.Option("--max-attempts", help="a job whose runs fail (non-zero exit) "
                                                     "this many times is FAILED; before that it runs again")] = 3,
          preempt: Annotated[bool, typer.Option("--preempt/--no-preempt", help="let the policy stop a running job "
                                                "(its checkpoints kept) for one that would be late")] = True,
          ) -> None:
    """Run the control plane: REST API under /v1 and the controller loop."""
    from suanli.logs import configure
    from suanli.service import limits
    from suanli.service.server import serve as run_server
    try:
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise UserError(f"--log-level: {log_level!r} is not one of debug, info, warning, error")
        configure(log_format, log_level.upper())
        limits.DEFAULT.rate_per_s = limits.parse_rate(rate_limit)    # read when the app is built
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
        run_server(network, db, host, port, policy, tick_s, heartbeat_timeout_s=heartbeat_timeout_s,
                   checkpoint_store=checkpoint_store, max_attempts=max_attempts, preempt=preempt,
                   max_agent_losses=max_agent_losses)
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
                  db: DbOpt = None) -> None:
    """Create a tenant; prints its token."""
    from suanli.service.auth import create_tenant as make
    from suanli.service.auth import parse_quota
    try:
        q = parse_quota(quota)
    except UserError as e:
        raise _fail(e) from None
    _admin(db, lambda s: make(s, name, q, budget_cny))


@admin_app.command("create-site-token")
def create_site_token(site: Annotated[str, typer.Argument(help="the site id (as in the network file)")],
                      network: Annotated[str | None, typer.Option(help="check SITE against this network file")] = None,
                      db: DbOpt = None) -> None:
    """A token for the agent of one site; prints it."""
    from suanli.service.auth import create_site_token as make
    from suanli.service.server import load_network
    try:
        net = load_network(network) if network else None
    except UserError as e:
        raise _fail(e) from None
    _admin(db, lambda s: make(s, site, net))


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
def agent(site: Annotated[str, typer.Option("--site", help="this site's id")],
          controller: Annotated[str | None, typer.Option("--controller", help="the server URL")] = None,
          token: Annotated[str | None, typer.Option("--token", help="the site's token")] = None,
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
              "--ray-address", help="ray: the head's dashboard URL, e.g. http://127.0.0.1:8265")] = None) -> None:
    """Run a site agent: register, heartbeat, pull assignments, run them, report."""
    from suanli.agent.agent import Agent
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        if not interval_s > 0:
            raise UserError(f"--interval-s: must be > 0, got {interval_s}")
        Agent(site, controller, token, executor, workdir, interval_s, checkpoint_dir, partition,
              ray_address).run()
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


def submit(file: Annotated[str, typer.Argument(help="a job: YAML or JSON (name, command, gpus, work_h, origin...)")],
           key: Annotated[str | None, typer.Option("--key", help="idempotency key: a retry with the same key "
                                                               "never creates a second job")] = None,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a job; prints its id."""
    try:
        body = _read_job(file)
        headers = {"Idempotency-Key": key} if key else {}
        job = _client(url, token).call("POST", "/v1/jobs", json=body, headers=headers)
    except UserError as e:
        raise _fail(e) from None
    out.print(f"{job['id']}\t{job['state']}", markup=False, highlight=False)


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
    lt = Table(title="lifecycle", title_justify="left")
    for col in ("at (UTC)", "h", "from", "to", "reason"):
        lt.add_column(col)
    for tr in j["transitions"]:
        lt.add_row(tr["at"][:19], f"{tr['at_h']:.4f}", tr["from_state"] or "", tr["to_state"], tr["reason"])
    out.print(lt)


def cancel(job_id: Annotated[int, typer.Argument(help="the job's id")],
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job (a running one is stopped by its agent)."""
    try:
        j = _client(url, token).call("DELETE", f"/v1/jobs/{job_id}")
    except UserError as e:
        raise _fail(e) from None
    out.print(f"{j['id']}\t{j['state']}", markup=False, highlight=False)


def bill(tenant: Annotated[str, typer.Argument(help="the tenant's name")],
         month: Annotated[str, typer.Option("--month", help="YYYY-MM (UTC)")],
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
        for col in ("job", "name", "site", "type", "GPU-h", "kWh", "kg CO2e", "GPU CNY", "energy CNY",
                    "transfer CNY", "total CNY"):
            tb.add_column(col, justify="right" if col not in ("name", "site", "type") else "left")
        for ln in inv.lines:
            tb.add_row(str(ln.job_id), ln.name, ln.site, ln.gpu_type, f"{ln.gpu_h:,.4f}", f"{ln.energy_kwh:,.3f}",
                       f"{ln.carbon_kg:,.3f}", f"{ln.gpu_cny:,.2f}", f"{ln.energy_cny:,.2f}",
                       f"{ln.transfer_cny:,.2f}", f"{ln.total_cny:,.2f}")
        tb.add_row("total", "", "", "", f"{inv.gpu_h:,.4f}", f"{inv.energy_kwh:,.3f}", f"{inv.carbon_kg:,.3f}",
                   f"{inv.gpu_cny:,.2f}", f"{inv.energy_cny:,.2f}", f"{inv.transfer_cny:,.2f}",
                   f"{inv.total_cny:,.2f}", style="bold")
        out.print(tb)


def register_service_commands(app: typer.Typer) -> None:
    """Add serve, agent, submit, jobs, job, cancel and bill to `app`."""
    for fn in (serve, agent, submit, jobs, job, cancel, bill):
        app.command(fn.__name__)(fn)


agent_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
agent_app.command()(agent)

main_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       help="suanli's service commands (also mounted on `suanli`).")
register_service_commands(main_app)
main_app.add_typer(admin_app, name="admin")

if __name__ == "__main__":
    main_app()
