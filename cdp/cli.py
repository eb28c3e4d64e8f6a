"""The ``cdp`` command line: the composition root (commands may import from every layer)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

from cdp.config import Settings, get_settings
from cdp.errors import CdpError

app = typer.Typer(help="Open, warehouse-native customer data platform.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
sources_app = typer.Typer(help="Sources and their write keys.", no_args_is_help=True)
tokens_app = typer.Typer(help="Scoped API tokens.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Messages that failed validation.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(tokens_app, name="tokens")
users_app = typer.Typer(help="Console users (admin, marketer, analyst).", no_args_is_help=True)
app.add_typer(users_app, name="users")
profiles_app = typer.Typer(help="Profiles: look one up, explain its merges, undo a bad merge.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
regulations_app = typer.Typer(help="GDPR / CCPA: delete or suppress people across the identity graph.",
                               no_args_is_help=True)
app.add_typer(regulations_app, name="regulations")
demo_app = typer.Typer(help="Demo data and the end-to-end demo.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(demo_app, name="demo")
plans_app = typer.Typer(
    help="Tracking plans (Segment Protocols): JSON Schema rules per event, enforced per source in a mode: "
    "allow (count violations), flag (also mark the stored event) or block (quarantine it).",
    no_args_is_help=True,
)
app.add_typer(plans_app, name="plans")

out = Console()
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """A user mistake or an unreachable store is one clear line on stderr and exit code 2."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CdpError as error:
            err.print(f"[red]error:[/red] {error.message}", highlight=False)
        except OperationalError as error:
            err.print(f"[red]error:[/red] cannot use the store: {str(error.orig).strip().splitlines()[0]}", highlight=False)
        except ValueError as error:  # settings that fail validation
            err.print(f"[red]error:[/red] {str(error).strip().splitlines()[0]}", highlight=False)
        raise typer.Exit(2)

    return run  # type: ignore[return-value]


def _settings() -> Settings:
    return get_settings()


def _store():  # type: ignore[no-untyped-def]
    from cdp.setup import prepare_store

    return prepare_store(_settings(), pool=False)


@app.command()
@user_errors
def init() -> None:
    """Create the store, a source named "default" with its write key, and an admin token."""
    from sqlalchemy import select

    from cdp.auth.service import create_source, create_token
    from cdp.store.tables import sources

    settings = _settings()
    engine = _store()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if conn.execute(select(sources.c.id).where(sources.c.name == "default")).first():
            out.print(f"Store at {_where(settings)} is already initialised; "
                      "`cdp sources create NAME` and `cdp tokens create --scope admin` make new keys.")
            return
        _, write_key = create_source(conn, name="default", now=now)
        _, token = create_token(conn, name="admin", scopes=["admin"], now=now)
    out.print(f"Store ready at {_where(settings)}")
    out.print(f"write key (source \"default\"): [bold]{write_key}[/bold]")
    out.print(f"admin token: [bold]{token}[/bold]")
    out.print("Keep them: only their hashes are stored.")


def _where(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes [default: CDP_SERVE_WORKERS or CPUs].")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the HTTP API (Tracking, Profile, Recommendations ...)."""
    import uvicorn

    settings = _settings()
    _store().dispose()  # migrate once here, before the workers start
    count = workers or settings.serve_workers
    out.print(f"cdp serving on http://{host}:{port} with {count} worker(s); store {_where(settings)}")
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=count,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@sources_app.command("create")
@user_errors
def sources_create(name: str) -> None:
    """Create a source and print its write key."""
    from cdp.auth.service import create_source

    with _store().begin() as conn:
        source, write_key = create_source(conn, name=name, now=datetime.now(UTC))
    out.print(f"source {source.name!r} (id {source.id}) write key:")
    print(write_key)


@sources_app.command("list")
@user_errors
def sources_list() -> None:
    """List sources."""
    from cdp.auth.service import list_sources

    with _store().connect() as conn:
        table = Table("id", "name")
        for source in list_sources(conn):
            table.add_row(str(source.id), source.name)
    out.print(table)


@tokens_app.command("create")
@user_errors
def tokens_create(
    scope: Annotated[list[str], typer.Option("--scope", help="Repeat for several: admin, profiles:read, recommendations:read, ...")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "token",
) -> None:
    """Create an API token with the given scopes and print it."""
    from cdp.auth.service import create_token

    scopes = [part for value in scope for part in value.replace(",", " ").split()]
    with _store().begin() as conn:
        token, secret = create_token(conn, name=name, scopes=scopes, now=datetime.now(UTC))
    out.print(f"token {token.name!r} (id {token.id}) scopes {' '.join(sorted(token.scopes))}:")
    print(secret)


@users_app.command("create")
@user_errors
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email, their sign-in name.")],
    role: Annotated[str, typer.Option(help="admin, marketer (profiles read, audiences and journeys write) or analyst (read only).")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
) -> None:
    """Create a console user; the password is prompted for unless --password-stdin."""
    import sys

    from cdp.auth.users import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _store().begin() as conn:
        user = create_user(conn, email=email, role=role, password=password, now=datetime.now(UTC))
    out.print(f"user {user.email} ({user.role}) created; sign in at /ui of `cdp serve`", highlight=False)


@users_app.command("list")
@user_errors
def users_list() -> None:
    """List console users and their roles."""
    from cdp.auth.users import list_users

    with _store().connect() as conn:
        table = Table("id", "email", "role")
        for user in list_users(conn):
            table.add_row(str(user.id), user.email, user.role)
    out.print(table)


@app.command("import")
@user_errors
def import_(
    file: Annotated[Path, typer.Argument(help="JSON lines of Segment Spec messages, or CSV / Parquet rows.")],
    source: Annotated[str, typer.Option(help="Source the events belong to (dedup is per source).")] = "default",
    format: Annotated[str | None, typer.Option("--format", help="jsonl, csv or parquet [default: from the suffix].")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN, e.g. userId=customer_id or properties.revenue=amount.")] = None,
    type_: Annotated[str, typer.Option("--type", help="Message type of CSV / Parquet rows without a type column.")] = "track",
    event: Annotated[str | None, typer.Option(help="Event name of track rows without an event column.")] = None,
    backfill: Annotated[bool, typer.Option(help="Historic data: counts in features and training from when it "
                                                "happened; fires no real-time audiences or journeys.")] = False,
) -> None:
    """Import events from a file, with the Tracking API's validation, dedup and event-time rules."""
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from sqlalchemy import select

    from cdp.errors import InvalidInput, NotFound
    from cdp.events.imports import ColumnMapping, detect_format, import_messages, read_messages
    from cdp.events.ingest import IngestConfig
    from cdp.store.tables import sources

    if not file.is_file():
        raise InvalidInput(f"no such file: {file}")
    fmt = detect_format(file, format)
    mapping = ColumnMapping.parse(map_ or [], default_type=type_, default_event=event)
    settings = _settings()
    engine = _store()
    with engine.connect() as conn:
        source_id = conn.execute(select(sources.c.id).where(sources.c.name == source)).scalar()
    if source_id is None:
        raise NotFound(f"no source named {source!r}; create it with `cdp sources create {source}`")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total, unit = pq.ParquetFile(file).metadata.num_rows, MofNCompleteColumn()
    else:
        total, unit = file.stat().st_size, DownloadColumn()
    with Progress("[progress.description]{task.description}", BarColumn(), unit, TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(f"importing {file.name}", total=total)
        result = import_messages(
            engine,
            source_id=source_id,
            messages=read_messages(file, fmt, mapping, lambda n: progress.advance(task, n)),
            chunk_rows=settings.import_chunk_rows,
            config=IngestConfig.from_settings(settings),
            live=not backfill,
        )
    out.print(f"read {result.read:,} messages: {result.accepted:,} accepted (repeated messageIds are kept once), "
              f"{result.quarantined:,} quarantined")
    if backfill and result.accepted:
        from cdp.audiences.membership import recompute
        from cdp.store.db import write_transaction

        # History changes who is in; the backfill flag keeps those changes from reaching destinations.
        changes = write_transaction(engine, lambda conn: recompute(conn, as_of=datetime.now(UTC), deliver=False))
        if changes:
            out.print(f"audiences recomputed without deliveries: {sum(c.entered for c in changes):,} entered, "
                      f"{sum(c.exited for c in changes):,} exited")
    if result.quarantined:
        out.print("see them with `cdp quarantine list`")


@quarantine_app.command("list")
@user_errors
def quarantine_list(
    limit: Annotated[int, typer.Option(min=1, help="How many to show.")] = 20,
    code: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
) -> None:
    """Show quarantined messages waiting for a replay, with the reason."""
    import orjson

    from cdp.events.quarantine import count_pending, list_pending

    with _store().connect() as conn:
        counts = count_pending(conn)
        pending = list_pending(conn, limit=limit, code=code)
    if not counts:
        out.print("The quarantine is empty.")
        return
    out.print("pending: " + ", ".join(f"{c} {n:,}" for c, n in sorted(counts.items())))
    table = Table("id", "source", "received", "code", "reason", "message")
    for item in pending:
        table.add_row(str(item.id), item.source, item.received_at.isoformat(timespec="seconds"), item.code,
                      item.reason, orjson.dumps(item.payload).decode()[:80])
    out.print(table)


@quarantine_app.command("replay")
@user_errors
def quarantine_replay(
    id_: Annotated[list[int] | None, typer.Option("--id", help="Only these ids (repeatable) [default: all pending].")] = None,
) -> None:
    """Validate quarantined messages again and store those that now pass."""
    from cdp.events.ingest import IngestConfig
    from cdp.events.quarantine import replay

    config = IngestConfig.from_settings(_settings())
    with _store().begin() as conn:
        result = replay(conn, now=datetime.now(UTC), config=config, ids=id_)
    out.print(f"replayed {result.replayed:,}; still invalid {result.still_invalid:,}")


@profiles_app.command("show")
@user_errors
def profiles_show(
    identifier: Annotated[str, typer.Argument(help="type:value, e.g. user_id:u1, email:a@b.io, profile_id:42")],
    collection: Annotated[str, typer.Option(help="users, accounts or a custom entity.")] = "users",
) -> None:
    """A profile's identifiers, traits and merge log."""
    from cdp.identity.service import merge_log
    from cdp.profiles.service import external_ids_page, resolve_identifier, traits_page
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        ids = external_ids_page(conn, profile_id=profile_id, limit=1000).items
        traits = traits_page(conn, profile_id=profile_id, limit=1000).items
        log = merge_log(conn, profile_id=profile_id)
    out.print(f"[bold]profile {profile_id}[/bold] ({collection})")
    table = Table("identifier", "value", "first seen")
    for row in ids:
        table.add_row(row.type, row.value, f"{row.created_at:%Y-%m-%d %H:%M}")
    out.print(table)
    table = Table("trait", "value", "class", "as of (event time)")
    for row in traits:
        table.add_row(row.name, str(row.value), row._mapping["class"], f"{row.event_time:%Y-%m-%d %H:%M}")
    out.print(table)
    if log:
        table = Table("merge", "outcome", "survivor", "merged", "why", "message")
        for m in log:
            table.add_row(str(m.id), m.outcome + (" (split)" if m.split_at else ""), str(m.winner_id),
                          str(m.loser_id), m.rule, m.message_id or "")
        out.print(table)


@profiles_app.command("split")
@user_errors
def profiles_split(merge_id: Annotated[int, typer.Argument(help="The merge's id, from `cdp profiles show`.")]) -> None:
    """Undo a bad merge: the merged profile comes back with its identifiers, events and traits."""
    from cdp.identity.schemas import IdentityRules
    from cdp.identity.service import split
    from cdp.store.db import write_transaction

    rules = IdentityRules.from_settings(_settings())
    record = write_transaction(_store(), lambda conn: split(conn, merge_id=merge_id, rules=rules, now=datetime.now(UTC)))
    out.print(f"split merge {record.id}: profile {record.loser_id} is back beside profile {record.winner_id}")


@regulations_app.command("create")
@user_errors
def regulations_create(
    subject_ids: Annotated[list[str], typer.Argument(help="The people's ids (up to 5,000).")],
    type_: Annotated[str, typer.Option("--type", help="DELETE_ONLY | SUPPRESS_WITH_DELETE | SUPPRESS_ONLY | UNSUPPRESS")],
    subject_type: Annotated[str, typer.Option(help="USER_ID | ANONYMOUS_ID | EMAIL")] = "USER_ID",
) -> None:
    """Create a regulation and carry it out now."""
    from cdp.privacy.regulations import claim_and_run, create_regulation
    from cdp.store.db import write_transaction

    engine = _store()
    regulation_id = write_transaction(engine, lambda conn: create_regulation(
        conn, regulation_type=type_, subject_type=subject_type, subject_ids=subject_ids, now=datetime.now(UTC)))
    done = claim_and_run(engine, regulation_id)
    out.print(f"regulation {regulation_id}: {done.status if done else 'taken up by a running server'}")
    if done and done.counts:
        out.print(", ".join(f"{key} {n:,}" for key, n in done.counts.items()))


@regulations_app.command("show")
@user_errors
def regulations_show(regulation_id: str) -> None:
    """Status of a regulation and what it removed."""
    from cdp.privacy.regulations import get_regulation

    with _store().connect() as conn:
        regulation = get_regulation(conn, regulation_id)
    out.print(f"{regulation.id} {regulation.regulation_type} {regulation.subject_type} x{len(regulation.subject_ids)}: "
              f"{regulation.status}" + (f" ({regulation.error})" if regulation.error else ""))
    if regulation.counts:
        out.print(", ".join(f"{key} {n:,}" for key, n in regulation.counts.items()))


@demo_app.callback(invoke_without_command=True)
@user_errors
def demo(
    ctx: typer.Context,
    profiles: Annotated[int, typer.Option(min=10, help="Simulated customers.")] = 2000,
    days: Annotated[int, typer.Option(min=7, help="Days of history.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Simulate a shop, send it through the HTTP API, then train predictions and recommenders on what landed."""
    if ctx.invoked_subcommand is not None:
        return
    import secrets

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cdp.demo.send import read_jsonl, send_messages
    from cdp.demo.server import start_server
    from cdp.demo.simulate import SimulationConfig, generate
    from cdp.events.stats import summarize
    from cdp.store.db import reader

    settings = _settings()
    engine = _store()
    out.print(f"[bold]1/7[/bold] simulating {profiles:,} customers over {days} days (seed {seed})")
    summary = generate(settings.home / "demo-data", SimulationConfig(profiles=profiles, days=days, seed=seed))
    out.print(f"     {summary.events:,} messages -> {summary.events_path}")

    write_key = secrets.token_urlsafe(24)
    server = start_server(settings, workers=2, log=settings.home / "demo-serve.log", write_keys=write_key)
    out.print(f"[bold]2/7[/bold] sending them to {server.url}/v1/batch in batches of 100")
    try:
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as progress:
            task = progress.add_task("sending", total=summary.events)
            sent = send_messages(server.url, write_key, read_jsonl(summary.events_path),
                                 progress=lambda n: progress.advance(task, n))
            task = progress.add_task("attributing to profiles", total=None)
            server.wait_attributed(progress=lambda backlog: progress.update(task, description=(
                f"attributing to profiles: {backlog:,} events to go")))
    finally:
        server.stop()
    out.print(f"     {sent.messages:,} messages in {sent.requests:,} requests, {sent.seconds:.1f} s "
              f"({sent.messages / max(sent.seconds, 1e-9):,.0f} messages/s), {sent.quarantined} quarantined")

    with reader(engine).connect() as conn:
        landed = summarize(conn)
    out.print(f"[bold]3/7[/bold] the store at {_where(settings)} now holds")
    table = Table("what", "count")
    table.add_row("events (a re-sent messageId is kept once)", f"{landed.events:,}")
    for kind, n in sorted(landed.by_type.items()):
        table.add_row(f"  {kind}", f"{n:,}")
    for name, n in landed.top_events:
        table.add_row(f"    track: {name}", f"{n:,}")
    table.add_row("distinct userIds", f"{landed.users:,}")
    table.add_row("distinct anonymousIds", f"{landed.anonymous_ids:,}")
    table.add_row("quarantined", f"{sum(landed.quarantined.values()):,}")
    out.print(table)
    if landed.first_event:
        out.print(f"event time from {landed.first_event:%Y-%m-%d} to {landed.last_event:%Y-%m-%d}")
    sent_at = datetime.now(UTC)
    _demo_training_frame(engine, as_of=summary.end, sent=sent_at)
    # The simulated history all arrived just now: as a backfill, it counts from when it happened.
    backfilled = settings.model_copy(update={"backfilled_until": sent_at})
    _demo_predictions(engine, backfilled, as_of=summary.end)
    _demo_recommendations(engine, settings)
    _demo_console_user(engine)
    _demo_journey(engine, settings)
    out.print(f"next: `cdp serve`, then the Profile API shows the predicted traits; `cdp predictions show churn`, "
              f"`cdp recs show USER`; later trainings: set CDP_BACKFILLED_UNTIL={sent_at.isoformat()}",
              highlight=False, soft_wrap=True)


DEMO_MARKETER = "marketer@demo.example"


def _demo_console_user(engine: Any) -> None:
    """A marketer for the console, with a fresh password each run (printed: this is a demo store)."""
    import secrets

    from cdp.auth.users import create_user, set_password
    from cdp.errors import Conflict

    password = secrets.token_urlsafe(12)
    with engine.begin() as conn:
        try:
            create_user(conn, email=DEMO_MARKETER, role="marketer", password=password, now=datetime.now(UTC))
        except Conflict:
            set_password(conn, email=DEMO_MARKETER, password=password)
    out.print(f"console: `cdp serve`, open http://127.0.0.1:8080/ui and sign in as [bold]{DEMO_MARKETER}[/bold] "
              f"with password [bold]{password}[/bold]", highlight=False, soft_wrap=True)


def _demo_training_frame(engine: Any, *, as_of: datetime, sent: datetime) -> None:
    from features import NotReady
    from features.batch import training_readiness

    # The simulated history all arrived just now: as a backfill, each snapshot sees what had
    # happened by its cutoff (otherwise nothing was known before today).
    out.print(f"[bold]4/7[/bold] a churn training frame (30-day horizon, 3 cutoffs before {as_of:%Y-%m-%d}), "
              f"the history received until {sent:%Y-%m-%d %H:%M} counting as a backfill", soft_wrap=True)
    try:
        frame, report = training_readiness(engine, as_of=as_of, backfilled_until=sent)
    except NotReady as error:
        out.print(f"     {error.message}", highlight=False)
        return
    cutoffs = ", ".join(f"{c:%Y-%m-%d}" for c in sorted(frame["cutoff"].unique()))
    out.print(f"     {frame.shape[0]:,} rows x {frame.shape[1]} columns (cutoffs {cutoffs}), "
              f"{frame['label'].mean():.1%} churned", highlight=False, soft_wrap=True)
    out.print(str(report), highlight=False, soft_wrap=True)


DEMO_PREDICTIONS = (("churn", "churn"), ("purchase", "purchase"), ("ltv", "ltv"))


def _demo_predictions(engine: Any, settings: Settings, *, as_of: datetime) -> None:
    from cdp.predictions.schemas import PredictionDefinition
    from cdp.predictions.service import create_prediction
    from cdp.store.db import write_transaction
    from features import NotReady
    from models.predict import score_prediction
    from models.train import train_prediction

    _quiet_mlflow()
    out.print(f"[bold]5/7[/bold] predictions (30 days ahead) trained as of {as_of:%Y-%m-%d}, tracked in MLflow "
              f"({settings.resolved_mlflow_tracking_uri}), scored back onto profiles", soft_wrap=True)
    for key, kind in DEMO_PREDICTIONS:
        definition = PredictionDefinition(key=key, kind=kind, window_days=30)
        write_transaction(engine, lambda conn, d=definition: create_prediction(conn, definition=d, now=datetime.now(UTC)))
        with err.status(f"training {key}"):
            try:
                trained = train_prediction(engine, definition, as_of=as_of, settings=settings)
            except NotReady as error:
                out.print(f"{key}: not trained: {error.message}", highlight=False, soft_wrap=True)
                continue
        out.print(str(trained), highlight=False, soft_wrap=True)
        with err.status(f"scoring {key}"):
            out.print(str(score_prediction(engine, key, as_of=as_of, settings=settings)), highlight=False,
                      soft_wrap=True)


def _demo_recommendations(engine: Any, settings: Settings) -> None:
    from sqlalchemy import select

    from cdp.store.tables import identities
    from models.recommend.train import train_recommender
    from models.recommend.writeback import write_back_champion
    from models.tracking import recommender_champion_version

    out.print("[bold]6/7[/bold] recommenders tuned on a temporal split, side by side with popularity")
    with err.status("training recommenders"):
        training = train_recommender(engine, settings, as_of=datetime.now(UTC))
    _print_selection(training)
    out.print(training.gate_line or "", highlight=False, soft_wrap=True)
    if recommender_champion_version(settings.resolved_mlflow_tracking_uri) is None:
        # A small demo's history may not let any model beat popularity by the gate's margin.
        out.print("no recommender is served yet: `cdp recs train` once there is more history", highlight=False)
        return
    out.print(str(write_back_champion(engine, settings, now=datetime.now(UTC), trained=training.bundle,
                                      trained_version=training.model_version)), highlight=False)
    with engine.connect() as conn:
        known = conn.execute(select(identities.c.value).where(identities.c.type == "user_id")
                             .order_by(identities.c.id).limit(1)).scalar()
    for user in (f"user_id:{known}", "anonymous_id:demo-visitor-never-seen"):
        _show_recommendations(engine, settings, user, limit=5)


def _demo_journey(engine: Any, settings: Settings) -> None:
    import secrets
    import time

    from cdp.audiences.membership import members_of
    from cdp.audiences.service import get_audience
    from cdp.audiences.sync import profile_identifiers
    from cdp.demo.journey import run_journey_demo
    from cdp.demo.receiver import WebhookReceiver
    from cdp.demo.server import start_server
    from cdp.store.db import reader

    def pick_members(key: str) -> list[str]:
        with reader(engine).connect() as conn:
            members = members_of(conn, audience_id=get_audience(conn, key=key).id, limit=200)
            known = profile_identifiers(conn, [m.profile_id for m in members])
        return [ids["user_id"] for ids in known.values() if "user_id" in ids][:12]

    out.print("[bold]7/7[/bold] a predicted-churn audience (churn top 20%) and a journey: members who view a product "
              "get a win-back offer by webhook after 1 s, 20% held out; a receiver on loopback gets them", soft_wrap=True)
    started = time.perf_counter()
    receiver = WebhookReceiver().start()
    write_key, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    server = start_server(settings, workers=1, log=settings.home / "demo-serve.log", write_keys=write_key,
                          admin_token=token, env={"CDP_DESTINATIONS_ALLOWLIST": "127.0.0.1",
                                                  "CDP_JOURNEYS_POLL_S": "0.2", "CDP_ATTRIBUTION_IDLE_MS": "20"})
    try:
        with err.status("running the journey"):
            result = run_journey_demo(server.url, admin_token=token, write_key=write_key, receiver=receiver,
                                      pick_members=pick_members)
    finally:
        server.stop()
        receiver.stop()
    report = result.report
    if not result.audience_size:
        out.print("     audience churn_risk: no members (churn was not scored above), so nobody enters the journey; "
                  "it is defined and waits for them", highlight=False, soft_wrap=True)
        return
    out.print(f"     audience churn_risk: {result.audience_size:,} members; {result.triggered} of them viewed a product: "
              f"{report['treated']['entries']} treated, {report['holdout']['entries']} held out", highlight=False,
              soft_wrap=True)
    table = Table("webhook received", "userId", "churn_percentile", "triggering event")
    for delivery in result.deliveries:
        properties = delivery.body["properties"]
        trigger = properties["journey_context"]["triggering_event"]
        table.add_row(delivery.body["event"], delivery.body.get("userId") or "", f"{properties.get('churn_percentile')}",
                      f"{trigger['event']} ({trigger['properties'].get('product_id', '')})")
    out.print(table)
    if result.deliveries:
        out.print("     the first one's properties (Segment Journeys' journey_context and journey_metadata):",
                  soft_wrap=True)
        out.print_json(data=result.deliveries[0].body["properties"])
    out.print(f"     {len(result.deliveries)} webhook deliveries, each signed (CDP-Signature) with an Idempotency-Key, "
              f"in {time.perf_counter() - started:.1f} s with the server's start; `cdp journeys report churn_winback` "
              "compares treated and holdout", highlight=False, soft_wrap=True)


@demo_app.command("generate")
@user_errors
def demo_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for events.jsonl, catalog.csv and the truth file.")] = Path("demo-data"),
    profiles: Annotated[int, typer.Option(min=1, help="Simulated customers.")] = 10_000,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Write simulated Segment events (JSON lines) with the ground truth, for `cdp import` or the API."""
    from cdp.demo.simulate import SimulationConfig, generate

    summary = generate(out_dir, SimulationConfig(profiles=profiles, days=days, seed=seed))
    out.print(f"{summary.events:,} messages from {summary.profiles:,} profiles -> {summary.events_path}")
    out.print(f"catalog ({summary.items:,} items) -> {summary.catalog_path}; ground truth -> {summary.truth_path}")


@plans_app.command("create")
@user_errors
def plans_create(
    name: str,
    file: Annotated[Path, typer.Option("--file", help="The rules, JSON: {\"events\": {NAME: schema}, \"identify\": schema, ...}.")],
) -> None:
    """Create a tracking plan; the file's rules are its version 1."""
    from cdp.governance.service import create_plan

    with _store().begin() as conn:
        plan = create_plan(conn, name=name, rules=_read_json(file), now=datetime.now(UTC))
    out.print(f"tracking plan {plan.name!r} v{plan.version} with {len(plan.rules.get('events', {}))} planned events; "
              f"`cdp plans assign {plan.name!r} --source SOURCE --mode flag` enforces it")


@plans_app.command("update")
@user_errors
def plans_update(
    name: str,
    file: Annotated[Path, typer.Option("--file", help="The new rules, JSON.")],
) -> None:
    """Add a version to a tracking plan; its sources enforce it from now on."""
    from cdp.governance.service import add_version

    with _store().begin() as conn:
        plan = add_version(conn, name=name, rules=_read_json(file), now=datetime.now(UTC))
    out.print(f"tracking plan {plan.name!r} is at v{plan.version}; "
              "`cdp quarantine replay` stores the blocked messages it now allows")


@plans_app.command("assign")
@user_errors
def plans_assign(
    name: str,
    source: Annotated[str, typer.Option(help="Source that enforces the plan.")],
    mode: Annotated[str, typer.Option(help="allow (count violations), flag (also mark the event) or block (quarantine it).")],
) -> None:
    """Make a source enforce a tracking plan (always its newest version)."""
    from cdp.governance.service import PLAN_CACHE_SECONDS, assign_plan

    with _store().begin() as conn:
        assigned = assign_plan(conn, source=source, plan=name, mode=mode, now=datetime.now(UTC))
    out.print(f"source {assigned.source!r} enforces {assigned.plan!r} in {assigned.mode} mode "
              f"(running servers within {PLAN_CACHE_SECONDS:.0f} s)")


@plans_app.command("unassign")
@user_errors
def plans_unassign(source: Annotated[str, typer.Option(help="Source that stops enforcing its plan.")]) -> None:
    """Stop enforcing a tracking plan on a source."""
    from cdp.governance.service import unassign_plan

    with _store().begin() as conn:
        unassign_plan(conn, source=source)
    out.print(f"source {source!r} enforces no tracking plan")


@plans_app.command("show")
@user_errors
def plans_show(
    name: str,
    version: Annotated[int | None, typer.Option(min=1, help="Version to show [default: the newest].")] = None,
) -> None:
    """Show a tracking plan's rules and the sources enforcing it."""
    from cdp.governance.service import get_plan
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        plan = get_plan(conn, name=name, version=version)
    out.print(f"tracking plan {plan.name!r} v{plan.version} of {plan.versions}, created {plan.created_at:%Y-%m-%d %H:%M} UTC")
    enforced = ", ".join(f"{s.source} ({s.mode})" for s in plan.sources)
    out.print(f"enforced by: {enforced or 'no source yet'}")
    out.print_json(data=plan.rules)


@plans_app.command("violations")
@user_errors
def plans_violations(source: Annotated[str | None, typer.Option(help="Only this source.")] = None) -> None:
    """Count violations per event and kind over the last hour, day and week."""
    from cdp.governance.schemas import WINDOWS
    from cdp.governance.service import count_violations
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        counts = count_violations(conn, now=datetime.now(UTC), source=source)
    if not counts:
        out.print("No violations in the last 7 days.")
        return
    table = Table("source", "type", "event", "kind", *WINDOWS)
    for row in counts:
        table.add_row(row.source, row.type, row.event or "", row.kind, *(f"{n:,}" for n in row.counts.values()))
    out.print(table)


@plans_app.command("infer")
@user_errors
def plans_infer(
    source: Annotated[str | None, typer.Option(help="Only this source's events.")] = None,
    sample: Annotated[int, typer.Option(min=1, help="How many of the newest track, identify and group messages to read.")] = 20_000,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the rules here [default: print them].")] = None,
) -> None:
    """Propose tracking plan rules from the events already stored."""
    import orjson

    from cdp.governance.infer import infer_plan
    from cdp.governance.service import source_id_of
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        source_id = source_id_of(conn, source) if source is not None else None
        proposed = infer_plan(conn, source_id=source_id, sample=sample)
    text = orjson.dumps(proposed.rules, option=orjson.OPT_INDENT_2).decode()
    if out_file is None:
        print(text)
        return
    out_file.write_text(text + "\n")
    out.print(f"{len(proposed.rules['events'])} events planned from {proposed.messages:,} messages -> {out_file}; "
              f"review it, then `cdp plans create NAME --file {out_file}`")


# -- computed traits -----------------------------------------------------------------------------

traits_app = typer.Typer(help="Computed traits: declare, list, delete, compute.", no_args_is_help=True)
app.add_typer(traits_app, name="traits")


@traits_app.command("define")
@user_errors
def traits_define(
    file: Annotated[Path, typer.Option("--file", help="JSON: one definition or a list of them.")],
) -> None:
    """Create or replace computed traits from a JSON file; `cdp traits compute` then fills them in."""
    from cdp.computed.service import define, load_definitions_file

    definitions = load_definitions_file(file)
    with _store().begin() as conn:
        for definition in definitions:
            _, status = define(conn, definition=definition, now=datetime.now(UTC))
            out.print(f"{definition.name} ({status})", highlight=False)
    out.print("Compute them with `cdp traits compute`; until then ingestion leaves them alone.")


@traits_app.command("list")
@user_errors
def traits_list() -> None:
    """Show the computed traits and when each was last computed."""
    from cdp.computed.service import list_definitions

    with _store().connect() as conn:
        stored = list_definitions(conn)
    if not stored:
        out.print("No computed traits; declare some with `cdp traits define --file FILE`.")
        return
    table = Table("name", "kind", "of", "property", "window", "filters", "on ingestion", "computed as of")
    for item in stored:
        d = item.definition
        table.add_row(d.name, d.kind, f"{d.type} {d.event or '(any)'}" if d.type != "identify" else "identify",
                      d.property or "", f"{d.window_days} d" if d.window_days else "all time", str(len(d.filters)),
                      "yes" if d.incremental else "no",
                      item.last_computed_at.isoformat(timespec="seconds") if item.last_computed_at else "never")
    out.print(table)


@traits_app.command("delete")
@user_errors
def traits_delete(name: Annotated[str, typer.Argument(help="The computed trait's name.")]) -> None:
    """Delete a computed trait, its values on every profile and their history."""
    from cdp.computed.service import delete_definition

    with _store().begin() as conn:
        removed = delete_definition(conn, name=name)
    out.print(f"deleted {name}; {removed:,} profiles held a value")


@traits_app.command("compute")
@user_errors
def traits_compute(
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO 8601 time [default: now].")] = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="Only this trait (repeatable) [default: all].")] = None,
) -> None:
    """Recompute computed traits in SQL as of a time and write the values that changed."""
    import time

    from cdp.computed.compute import compute_traits
    from cdp.computed.service import definitions_named
    from cdp.store.db import write_transaction

    when = _as_of(as_of)
    engine = _store()
    with engine.connect() as conn:
        definitions = definitions_named(conn, names=name or [])
    if not definitions:
        out.print("No computed traits; declare some with `cdp traits define --file FILE`.")
        return
    out.print(f"computing {len(definitions)} trait(s) as of {when.isoformat(timespec='seconds')}")
    for index, definition in enumerate(definitions, 1):
        started = time.perf_counter()
        # One transaction per trait: ingestion waits for one trait's write at a time, not for all.
        with err.status(f"[{index}/{len(definitions)}] {definition.name}"):
            [result] = write_transaction(
                engine, lambda conn, d=definition: compute_traits(conn, definitions=[d], as_of=when))
        out.print(f"[{index}/{len(definitions)}] {result.name}: {result.profiles:,} profiles hold a value, "
                  f"{result.changed:,} changed ({time.perf_counter() - started:.1f} s)", highlight=False)


def _as_of(value: str | None) -> datetime:
    """An ``--as-of`` option: ISO 8601, default now."""
    from cdp.errors import InvalidInput
    from cdp.events.timestamps import BadTimestamp, parse_timestamp

    try:
        return parse_timestamp(value, "--as-of") or datetime.now(UTC)
    except BadTimestamp as error:
        raise InvalidInput(str(error)) from None


# -- predictions ---------------------------------------------------------------------------------

predictions_app = typer.Typer(help="Predictions: churn, purchase, LTV and custom goals, trained on the store, "
                              "scored back onto profiles as predicted traits.", no_args_is_help=True)
app.add_typer(predictions_app, name="predictions")
AS_OF_HELP = "ISO 8601 date or time [default: now]; a past one backtests on imported history."


@predictions_app.callback()
def _quiet_mlflow() -> None:
    """MLflow narrates its store set-up, registrations and downloads on stderr, where our errors go."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")


@predictions_app.command("create")
@user_errors
def predictions_create(
    key: Annotated[str, typer.Argument(help="Trait prefix: KEY_probability, KEY_percentile, ...")],
    kind: Annotated[str, typer.Option(help="churn, purchase, ltv or custom.")],
    window_days: Annotated[int, typer.Option(help="Prediction window (presets 7/14/30/60/90/120).")] = 30,
    event: Annotated[list[str] | None, typer.Option("--event", help="churn / purchase / ltv: the qualifying or purchase "
                                                    "event (repeatable for churn); custom: the goal event.")] = None,
    min_count: Annotated[int | None, typer.Option(help="custom: the goal event at least this many times.")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="custom: PROPERTY=VALUE the goal event must have (repeatable).")] = None,
    revenue: Annotated[str, typer.Option(help="ltv: the revenue property.")] = "revenue",
    active_within_days: Annotated[int, typer.Option(
        help="Eligible: active in the last N days; 0: everyone seen, however long ago (an LTV over a whole customer base).")] = 90,
    min_purchases: Annotated[int | None, typer.Option(help="Eligible: at least N purchases.")] = None,
    fallback: Annotated[str, typer.Option(help="When the data is not ready: refuse, or heuristic (BTYD).")] = "refuse",
    gate_metric: Annotated[str | None, typer.Option(
        help="The held-out metric a model must beat the others on to score [roc_auc; normalized_gini for ltv].")] = None,
    gate_margin: Annotated[float, typer.Option(help="By how much, in the metric's units.")] = 0.0,
    gate_baselines: Annotated[bool, typer.Option(
        help="Whether the gate counts the baselines (recency, repeat rate, BTYD), or only the champion.")] = True,
) -> None:
    """Create a prediction, or a new version of it when the definition changed."""
    from cdp.errors import InvalidInput
    from cdp.predictions.schemas import parse_definition
    from cdp.predictions.service import create_prediction

    document: dict[str, Any] = {"key": key, "kind": kind, "window_days": window_days, "revenue": revenue,
                                "active_within_days": active_within_days or None, "min_purchases": min_purchases,
                                "fallback": fallback,
                                "gate": {"metric": gate_metric, "min_improvement": gate_margin,
                                         "beat_baselines": gate_baselines}}
    if kind == "custom":
        if len(event or []) != 1:
            raise InvalidInput("a custom prediction takes one goal event: --event NAME")
        document.update(goal_event=event[0], goal_min_count=min_count or 1,  # type: ignore[index]
                        goal_properties=dict(_property(item) for item in where or []))
    elif min_count is not None or where:
        raise InvalidInput("--min-count and --where are for custom predictions")
    elif event:
        document["events"] = event
    with _store().begin() as conn:
        stored, status = create_prediction(conn, definition=parse_definition(document), now=datetime.now(UTC))
    out.print(f"prediction {key} v{stored.definition.version} ({status}); train it with `cdp predictions train {key}`",
              highlight=False)


def _property(item: str) -> tuple[str, Any]:
    import orjson

    from cdp.errors import InvalidInput

    name, sep, raw = item.partition("=")
    if not sep or not name:
        raise InvalidInput(f"--where takes PROPERTY=VALUE, got {item!r}")
    try:  # numbers and booleans as JSON; anything else is a string
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return name, value if isinstance(value, str | bool | int | float) else raw


@predictions_app.command("list")
@user_errors
def predictions_list() -> None:
    """Show the predictions, their newest version and their champion model."""
    from cdp.predictions.service import list_predictions
    from models.tracking import champion_version

    with _store().connect() as conn:
        stored = list_predictions(conn)
    if not stored:
        out.print("No predictions; create one with `cdp predictions create KEY --kind churn`.")
        return
    uri = _settings().resolved_mlflow_tracking_uri
    table = Table("key", "version", "kind", "window", "target", "eligible", "champion")
    for item in stored:
        d = item.definition
        target = d.goal_event if d.kind == "custom" else ", ".join(d.events or ()) or "(default)"
        eligible = ", ".join(part for part in (f"active {d.active_within_days} d" if d.active_within_days else "",
                                               f">= {d.min_purchases} purchases" if d.min_purchases else "") if part)
        version = champion_version(uri, d.key)
        table.add_row(d.key, str(d.version), d.kind, f"{d.window_days} d", target or "", eligible or "everyone",
                      f"v{version}" if version else "none")
    out.print(table)


@predictions_app.command("train")
@user_errors
def predictions_train(
    key: str, as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
) -> None:
    """Train a prediction out of time and print its model card: metrics beside the baselines, the gate."""
    from cdp.predictions.service import get_prediction
    from models.train import train_prediction

    engine = _store()
    with engine.connect() as conn:
        definition = get_prediction(conn, key=key).definition
    with err.status(f"training {key} (features at every cutoff, evaluation, refit, MLflow)"):
        result = train_prediction(engine, definition, as_of=_as_of(as_of), settings=_settings())
    print(result)


@predictions_app.command("score")
@user_errors
def predictions_score(
    key: str, as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
) -> None:
    """Score every eligible profile with the champion and write the predicted traits."""
    from models.predict import score_prediction

    with err.status(f"scoring {key}"):
        result = score_prediction(_store(), key, as_of=_as_of(as_of), settings=_settings())
    print(result)


@predictions_app.command("show")
@user_errors
def predictions_show(key: str) -> None:
    """A prediction's definition and its champion's model card."""
    from cdp.predictions.service import get_prediction
    from models.tracking import model_card

    with _store().connect() as conn:
        stored = get_prediction(conn, key=key)
    out.print_json(data=stored.definition.model_dump(mode="json"))
    card = model_card(_settings().resolved_mlflow_tracking_uri, key)
    if card is None:
        out.print(f"no champion model yet: `cdp predictions train {key}`")
        return
    out.print(f"champion v{card['model_version']} (run {card['run_id']}), gate: {card['gate']['reason']}", highlight=False)
    predictors = list(card["metrics"])
    table = Table("metric", *predictors)
    for metric in sorted({m for values in card["metrics"].values() for m in values}):
        table.add_row(metric, *(f"{card['metrics'][p][metric]:.4f}" if metric in card["metrics"][p] else ""
                                for p in predictors))
    out.print(table)
    out.print("artifacts: " + ", ".join(card["artifacts"]), highlight=False)
    if card["last_scoring"]:
        last = card["last_scoring"]
        out.print(f"last scoring as of {last['as_of']}: {last['metrics'].get('profiles', 0):,.0f} profiles, "
                  f"score PSI {last['metrics'].get('score.psi', float('nan')):.3f}", highlight=False)
    if card["last_outcomes"]:
        outcomes = card["last_outcomes"]
        realized = outcomes["metrics"]
        bands = "  ".join(f"{d}: {realized[f'decile_{d:02d}.predicted']:.3f}/{realized[f'decile_{d:02d}.realized']:.3f}"
                          for d in range(1, 11) if f"decile_{d:02d}.realized" in realized)
        out.print(f"realized outcomes of the scoring as of {outcomes['as_of']} (window ended {outcomes['window_end']}): "
                  f"predicted {realized['predicted']:.4f}, realized {realized['realized']:.4f}; "
                  f"by decile, predicted/realized: {bands}", highlight=False)


@predictions_app.command("outcomes")
@user_errors
def predictions_outcomes(
    key: str,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Which scoring (its --as-of) [default: the latest "
                                              "whose window has passed].")] = None,
) -> None:
    """Realized outcomes of a past scoring by score decile, predicted beside realized; logged to MLflow."""
    from models.predict import record_outcomes

    print(record_outcomes(_store(), key, settings=_settings(), now=datetime.now(UTC),
                          as_of=_as_of(as_of) if as_of else None))


@predictions_app.command("export")
@user_errors
def predictions_export(
    key: str, out_file: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
) -> None:
    """Write a CSV of profile ids and their current scores, for analysis."""
    import csv

    from cdp.predictions.service import get_prediction
    from cdp.predictions.traits import read_scores, trait_names

    with _store().connect() as conn:
        definition = get_prediction(conn, key=key).definition
        rows = read_scores(conn, key=key, task=definition.task)
    names = trait_names(key, definition.task)
    with out_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["profile_id", *names])
        for row in rows:
            reasons = names[3]
            writer.writerow([row["profile_id"], *("; ".join(row.get(n) or []) if n == reasons else row.get(n, "")
                                                  for n in names)])
    out.print(f"{len(rows):,} profiles -> {out_file}")


# -- recommendations and the item catalog -----------------------------------------------------------

recs_app = typer.Typer(help="Recommenders: train and register, evaluate offline, show someone's recommendations.",
                       no_args_is_help=True, callback=_quiet_mlflow)
app.add_typer(recs_app, name="recs")
catalog_app = typer.Typer(help="The item catalog: descriptions and availability.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


def _print_selection(training: Any) -> None:
    import pandas as pd

    table = training.selection.table.drop(columns=["params"])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        # soft_wrap: rich would fold the table's rows at the terminal's width (80 columns in a log).
        out.print(table.round(4).to_string(), highlight=False, soft_wrap=True)
    out.print(f"chosen by validation NDCG@10: {training.selection.name} "
              f"{training.selection.table.loc[training.selection.name, 'params']}", highlight=False)
    out.print(training.metrics.round(4).to_string(), highlight=False)


@recs_app.command("train")
@user_errors
def recs_train(as_of: Annotated[str | None, typer.Option("--as-of", help="ISO 8601 time [default: now].")] = None) -> None:
    """Select a recommender, register it in MLflow, promote it through the gate, write back traits."""
    from cdp.errors import InvalidInput
    from models.recommend.train import train_recommender
    from models.recommend.writeback import write_back_champion

    settings = _settings()
    engine = _store()
    try:
        training = train_recommender(engine, settings, as_of=_as_of(as_of))
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    _print_selection(training)
    assert training.decision is not None
    out.print(f"gate: {'promoted' if training.promoted else 'refused'} v{training.model_version}: "
              f"{training.decision.reason}", highlight=False)
    written = write_back_champion(engine, settings, now=datetime.now(UTC), trained=training.bundle,
                                  trained_version=training.model_version)
    out.print(str(written), highlight=False)


@recs_app.command("evaluate")
@user_errors
def recs_evaluate(as_of: Annotated[str | None, typer.Option("--as-of", help="ISO 8601 time [default: now].")] = None) -> None:
    """The offline table (every model beside popularity); nothing is registered."""
    from cdp.errors import InvalidInput
    from models.recommend.train import train_recommender

    try:
        training = train_recommender(_store(), _settings(), as_of=_as_of(as_of), track=False)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    _print_selection(training)


@recs_app.command("show")
@user_errors
def recs_show(
    user: Annotated[str, typer.Argument(help="user_id:u1, anonymous_id:a1, email:… or a bare user id.")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many items.")] = 10,
) -> None:
    """Someone's recommendations from the champion, as the API serves them."""
    _show_recommendations(_store(), _settings(), user, limit=limit)


def _show_recommendations(engine: Any, settings: Settings, user: str, *, limit: int) -> None:
    from cdp.errors import NotFound
    from cdp.profiles.service import find_person
    from cdp.store.db import reader
    from features.interactions import read_imported_catalog, recent_items, with_imported
    from models.recommend.serve import Ask, ServingModel
    from models.tracking import load_recommender, recommender_champion_version

    uri = settings.resolved_mlflow_tracking_uri
    version = recommender_champion_version(uri)
    if version is None:
        raise NotFound("no recommender champion yet: run `cdp recs train`")
    bundle = load_recommender(uri, version)
    catalog = with_imported(bundle.catalog, read_imported_catalog(engine))
    model = ServingModel(bundle, version, catalog)
    with reader(engine).connect() as conn:
        profile_id = find_person(conn, user)
        recent = [] if profile_id is None else recent_items(
            conn, profile_id=profile_id, as_of=datetime.now(UTC), limit=settings.recs_session_items)
    answer = model.for_profile(profile_id, recent, Ask(n=limit, exclude_seen=settings.recs_exclude_seen))
    out.print(f"{user}: profile {profile_id if profile_id is not None else '(unknown)'}, strategy {answer.strategy}, "
              f"model v{version} ({bundle.name})", highlight=False)
    table = Table("#", "item", "score", "name", "category", "brand", "price")
    for rank, item in enumerate(answer.items, 1):
        row = catalog.loc[item["item_id"]] if item["item_id"] in catalog.index else None
        described = ["" if row is None or row[c] is None or row[c] != row[c] else str(row[c])
                     for c in ("name", "category", "brand", "price")]
        table.add_row(str(rank), str(item["item_id"]), f"{item['score']:.4f}", *described)
    out.print(table)


@catalog_app.command("import")
@user_errors
def catalog_import(
    file: Annotated[Path, typer.Argument(help="CSV (header row) or JSON lines: item_id, name, category, brand, price, available.")],
) -> None:
    """Insert or update catalog items; serving filters on their availability within CDP_RECS_POLL_SECONDS."""
    from cdp.catalog.service import import_catalog, read_catalog_file
    from cdp.store.db import write_transaction

    rows = list(read_catalog_file(file))  # validated whole before anything is written
    written = write_transaction(_store(), lambda conn: import_catalog(conn, iter(rows), now=datetime.now(UTC)))
    out.print(f"{written:,} catalog items imported from {file.name}")


# -- flows ---------------------------------------------------------------------------------------

flows_app = typer.Typer(help="Scheduled pipelines (Prefect): features, then models, scores and audiences.",
                        no_args_is_help=True)
app.add_typer(flows_app, name="flows")


@flows_app.command("list")
@user_errors
def flows_list() -> None:
    """The flows, their parameters, and which one runs on the schedule."""
    import flows

    settings = _settings()
    table = Table("flow", "parameters", "schedule (UTC cron)", "what it does")
    for name, flow in flows.FLOWS.items():
        table.add_row(name, ", ".join(flow.parameters.properties), settings.flows_schedule if name == flows.SCHEDULED
                      else "on demand", flow.description or "")
    out.print(table)


@flows_app.command("run")
@user_errors
def flows_run(
    name: Annotated[str, typer.Argument(help="The flow, e.g. build_features or daily (see `cdp flows list`).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO 8601 time or date [default: now].")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE, a flow parameter (repeatable), "
                                                    "e.g. partitions=4.")] = None,
) -> None:
    """Run one flow here and now (Prefect's temporary local server; nothing to start by hand)."""
    from cdp.errors import InvalidInput

    parameters: dict[str, Any] = {}
    for item in param or []:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise InvalidInput(f"--param takes NAME=VALUE, got {item!r}")
        parameters[key] = value
    if as_of is not None:
        parameters["as_of"] = _as_of(as_of)
    settings = _settings()
    import flows

    flows.chosen(name)  # an unknown name fails before the store is touched
    _store().dispose()  # migrate once, here: a flow's retries are for transient errors, not a missing table
    result = flows.run(name, settings, **parameters)
    for step, outcome in (result.items() if isinstance(result, dict) else [(name, result)]):
        _print_outcome(step, outcome)


def _print_outcome(name: str, outcome: Any) -> None:
    from flows.build_features import FeatureSnapshot

    if isinstance(outcome, FeatureSnapshot):
        out.print(f"{name}: {outcome.profiles:,} profiles x {outcome.columns} columns -> {outcome.path}",
                  highlight=False, soft_wrap=True)
        out.print(outcome.readiness, highlight=False, soft_wrap=True)
    elif isinstance(outcome, dict):  # a flow of several parts (trainings, scorings)
        for part, result in outcome.items():
            _print_outcome(f"{name} / {part}", result)
    else:
        out.print(f"{name}: {outcome}", highlight=False, soft_wrap=True)


@flows_app.command("serve")
@user_errors
def flows_serve() -> None:
    """Serve every flow to the Prefect server in PREFECT_API_URL; `daily` runs on CDP_FLOWS_SCHEDULE."""
    import flows

    settings = _settings()
    _store().dispose()
    out.print(f"serving {', '.join(flows.FLOWS)}; {flows.SCHEDULED} at cron {settings.flows_schedule!r} (UTC)")
    flows.serve(settings)


# -- audiences and destinations ------------------------------------------------------------------

audiences_app = typer.Typer(help="Audiences: conditions on traits, predictions, events and audiences.",
                            no_args_is_help=True)
app.add_typer(audiences_app, name="audiences")
destinations_app = typer.Typer(help="Destinations: webhooks and Segment-compatible endpoints, and their deliveries.",
                               no_args_is_help=True)
app.add_typer(destinations_app, name="destinations")


def _read_json(file: Path) -> Any:
    import orjson

    from cdp.errors import InvalidInput

    if not file.is_file():
        raise InvalidInput(f"no such file: {file}")
    try:
        return orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{file} is not JSON: {exc}") from None


@audiences_app.command("create")
@user_errors
def audiences_create(
    file: Annotated[Path, typer.Option("--file", help="JSON: {\"key\", \"name\", \"condition\", \"destinations\": [ids]}.")],
) -> None:
    """Create an audience (or a new version of it) and compute its members now."""
    from cdp.audiences.membership import recompute
    from cdp.audiences.schemas import parse_audience
    from cdp.audiences.service import save_audience
    from cdp.store.db import write_transaction

    definition = parse_audience(_read_json(file))

    def save(conn):  # type: ignore[no-untyped-def]
        now = datetime.now(UTC)
        stored, status = save_audience(conn, definition=definition, now=now)
        changes = recompute(conn, keys=[stored.key], as_of=now) if status != "unchanged" else []
        return stored, status, changes

    stored, status, changes = write_transaction(_store(), save)
    out.print(f"audience {stored.key!r} v{stored.version} ({status})", highlight=False)
    for change in changes:
        out.print(f"{change.size:,} members; {change.entered:,} entered, {change.exited:,} exited", highlight=False)


@audiences_app.command("preview")
@user_errors
def audiences_preview(
    file: Annotated[Path, typer.Option("--file", help="JSON: a definition, or {\"condition\": ...}.")],
) -> None:
    """Show how many profiles a condition holds for now, and a sample, without saving it."""
    from cdp.audiences.membership import preview
    from cdp.audiences.schemas import parse_condition
    from cdp.errors import InvalidInput
    from cdp.store.db import reader

    data = _read_json(file)
    if not isinstance(data, dict) or "condition" not in data:
        raise InvalidInput(f"{file} must hold an object with a condition")
    condition = parse_condition(data["condition"])
    with reader(_store()).connect() as conn:
        found = preview(conn, condition=condition, as_of=datetime.now(UTC))
    out.print(f"{found.size:,} profiles")
    table = Table("profile", "user_id", "anonymous_id", "email")
    for row in found.sample:
        table.add_row(str(row["profile_id"]), row.get("user_id", ""), row.get("anonymous_id", ""), row.get("email", ""))
    out.print(table)


@audiences_app.command("list")
@user_errors
def audiences_list() -> None:
    """Show the audiences, their size and when they were last computed."""
    from cdp.audiences.service import audience_sizes, list_audiences
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        stored, sizes = list_audiences(conn), audience_sizes(conn)
    if not stored:
        out.print("No audiences; create one with `cdp audiences create --file FILE`.")
        return
    table = Table("key", "name", "version", "members", "destinations", "computed as of")
    for a in stored:
        table.add_row(a.key, a.definition.title, str(a.version), f"{sizes.get(a.id, 0):,}",
                      ", ".join(map(str, a.definition.destinations)),
                      a.last_computed_at.isoformat(timespec="seconds") if a.last_computed_at else "never")
    out.print(table)


@audiences_app.command("show")
@user_errors
def audiences_show(key: Annotated[str, typer.Argument(help="The audience's key.")]) -> None:
    """Show an audience's definition and size."""
    from cdp.audiences.service import audience_sizes, get_audience
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        stored = get_audience(conn, key=key)
        size = audience_sizes(conn).get(stored.id, 0)
    out.print(f"audience {stored.key!r} v{stored.version}: {size:,} members", highlight=False)
    out.print_json(data=stored.definition.model_dump(mode="json", by_alias=True))


@audiences_app.command("recompute")
@user_errors
def audiences_recompute(
    key: Annotated[list[str] | None, typer.Option("--key", help="Only this audience (repeatable) [default: all].")] = None,
    deliver: Annotated[bool, typer.Option(help="Send the changes to the audiences' destinations.")] = True,
) -> None:
    """Evaluate audiences over every profile now and record who entered and exited."""
    from cdp.audiences.membership import recompute
    from cdp.store.db import write_transaction

    changes = write_transaction(_store(), lambda conn: recompute(
        conn, keys=key or [], as_of=datetime.now(UTC), deliver=deliver))
    if not changes:
        out.print("No audiences; create one with `cdp audiences create --file FILE`.")
    for change in changes:
        out.print(f"{change.key}: {change.size:,} members; {change.entered:,} entered, {change.exited:,} exited",
                  highlight=False)


@destinations_app.command("create")
@user_errors
def destinations_create(
    name: str,
    url: Annotated[str, typer.Option(help="Where messages are POSTed.")],
    type_: Annotated[str, typer.Option("--type", help="webhook, or segment (a Segment-compatible /v1/batch URL).")] = "webhook",
    secret: Annotated[str | None, typer.Option(help="HMAC signing key [default: generated].")] = None,
    write_key: Annotated[str | None, typer.Option(help="segment: the receiving source's write key.")] = None,
) -> None:
    """Register a destination; prints its id and signing secret."""
    from cdp.destinations.addresses import Allowlist
    from cdp.destinations.schemas import parse_destination
    from cdp.destinations.service import create_destination

    spec = parse_destination({"type": type_, "name": name, "url": url, "secret": secret, "write_key": write_key})
    allowlist = Allowlist.parse(_settings().destinations_allowlist)
    with _store().begin() as conn:
        created = create_destination(conn, spec=spec, allowlist=allowlist, now=datetime.now(UTC))
    out.print(f"destination {created.name!r} (id {created.id}) -> {created.url}; signing secret:", highlight=False)
    print(created.secret)


@destinations_app.command("list")
@user_errors
def destinations_list() -> None:
    """Show the destinations."""
    from cdp.destinations.service import list_destinations

    with _store().connect() as conn:
        found = list_destinations(conn)
    table = Table("id", "type", "name", "url")
    for d in found:
        table.add_row(str(d.id), d.type, d.name, d.url)
    out.print(table)


@destinations_app.command("deliveries")
@user_errors
def destinations_deliveries(
    destination_id: int,
    limit: Annotated[int, typer.Option(min=1, help="How many messages.")] = 20,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
) -> None:
    """The delivery log of a destination: newest messages with status, attempts and last error."""
    from cdp.destinations.outbox import messages_page
    from cdp.destinations.service import get_destination

    with _store().connect() as conn:
        get_destination(conn, destination_id=destination_id)
        rows = messages_page(conn, destination_id=destination_id, limit=limit, status=status)
    table = Table("id", "idempotency key", "status", "attempts", "last error", "created")
    for r in rows:
        table.add_row(str(r.id), r.idempotency_key, r.status, str(r.attempts), r.last_error or "",
                      r.created_at.isoformat(timespec="seconds"))
    out.print(table)


@destinations_app.command("replay")
@user_errors
def destinations_replay(
    destination_id: int,
    status: Annotated[str, typer.Option(help="Replay dead (default) or delivered messages.")] = "dead",
    id_: Annotated[list[int] | None, typer.Option("--id", help="Only these messages (repeatable).")] = None,
) -> None:
    """Queue messages of a destination again from their first attempt; a running server sends them."""
    from cdp.destinations.outbox import replay
    from cdp.destinations.service import get_destination

    with _store().begin() as conn:
        get_destination(conn, destination_id=destination_id)
        count = replay(conn, destination_id=destination_id, now=datetime.now(UTC), ids=id_ or [], status=status)
    out.print(f"{count:,} messages queued again")

# -- journeys and the contact policy --------------------------------------------------------------

journeys_app = typer.Typer(help="Event-triggered journeys: steps, holdouts and lift reports.", no_args_is_help=True)
app.add_typer(journeys_app, name="journeys")
policy_app = typer.Typer(help="The global contact policy: frequency caps, quiet hours, journey priority.",
                         no_args_is_help=True)
app.add_typer(policy_app, name="contact-policy")


@journeys_app.command("create")
@user_errors
def journeys_create(
    file: Annotated[Path, typer.Option("--file", help="JSON: {\"key\", \"entry\", \"steps\", \"holdout\", \"goal\", ...}.")],
) -> None:
    """Create a journey (or a new version of it); live events enter it from now on."""
    from cdp.journeys.schemas import parse_journey
    from cdp.journeys.service import save_journey
    from cdp.store.db import write_transaction

    definition = parse_journey(_read_json(file))
    stored, status = write_transaction(_store(), lambda conn: save_journey(
        conn, definition=definition, now=datetime.now(UTC)))
    out.print(f"journey {stored.key!r} v{stored.version} ({status})", highlight=False)


@journeys_app.command("list")
@user_errors
def journeys_list() -> None:
    """Show the journeys and how many profiles are on their way."""
    from cdp.journeys.service import active_counts, list_journeys
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        stored, active = list_journeys(conn), active_counts(conn)
    if not stored:
        out.print("No journeys; create one with `cdp journeys create --file FILE`.")
        return
    table = Table("key", "name", "version", "entry event", "holdout", "on their way")
    for j in stored:
        table.add_row(j.key, j.definition.title, str(j.version), j.definition.entry.event,
                      f"{j.definition.holdout:.0%}", f"{active.get(j.id, 0):,}")
    out.print(table)


@journeys_app.command("show")
@user_errors
def journeys_show(key: Annotated[str, typer.Argument(help="The journey's key.")]) -> None:
    """Show a journey's definition."""
    from cdp.journeys.service import get_journey
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        stored = get_journey(conn, key=key)
    out.print(f"journey {stored.key!r} v{stored.version}", highlight=False)
    out.print_json(data=stored.definition.model_dump(mode="json", exclude_none=True))


@journeys_app.command("report")
@user_errors
def journeys_report(key: Annotated[str, typer.Argument(help="The journey's key.")]) -> None:
    """Lift: goal conversions of the treated profiles against the holdout, and sends by outcome."""
    from cdp.journeys.report import lift_report
    from cdp.journeys.service import get_journey
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        report = lift_report(conn, journey=get_journey(conn, key=key))
    treated, holdout = report.treated, report.holdout
    out.print(f"journey {report.journey!r} v{report.version}: {treated.entries + holdout.entries:,} entries "
              f"({treated.entries:,} treated, {holdout.entries:,} holdout); goal: {report.goal or 'none set'}",
              highlight=False)
    table = Table("group", "entries", "sends", "conversions", "conversion rate")
    for name, arm in (("treated", treated), ("holdout", holdout)):
        table.add_row(name, f"{arm.entries:,}", f"{arm.sends:,}", f"{arm.conversions:,}",
                      "-" if arm.rate is None else f"{arm.rate:.2%}")
    out.print(table)
    if report.absolute_lift is not None and report.absolute_ci is not None:
        low, high = report.absolute_ci
        out.print(f"absolute lift {report.absolute_lift:+.2%} (95% CI {low:+.2%} to {high:+.2%})", highlight=False)
    if report.relative_lift is not None:
        interval = (f" (95% CI {report.relative_ci[0]:+.1%} to {report.relative_ci[1]:+.1%})"
                    if report.relative_ci else "")
        out.print(f"relative lift {report.relative_lift:+.1%}{interval}", highlight=False)
    sends = ", ".join(f"{status} {n:,}" for status, n in sorted(report.sends.items())) or "none"
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(report.reasons.items()))
    out.print(f"sends: {sends}" + (f" (suppressed / deferred: {reasons})" if reasons else ""), highlight=False)


@journeys_app.command("delete")
@user_errors
def journeys_delete(key: Annotated[str, typer.Argument(help="The journey's key.")]) -> None:
    """Delete a journey with its instances and send log."""
    from cdp.journeys.service import delete_journey
    from cdp.store.db import write_transaction

    write_transaction(_store(), lambda conn: delete_journey(conn, key=key))
    out.print(f"journey {key!r} deleted", highlight=False)


@policy_app.command("show")
@user_errors
def contact_policy_show() -> None:
    """Show the contact policy."""
    from cdp.journeys.service import get_policy
    from cdp.store.db import reader

    with reader(_store()).connect() as conn:
        policy, updated_at = get_policy(conn)
    out.print(f"contact policy, set {updated_at.isoformat(timespec='seconds') if updated_at else 'never'}")
    out.print_json(data=policy.model_dump(mode="json"))


@policy_app.command("set")
@user_errors
def contact_policy_set(
    file: Annotated[Path, typer.Option("--file", help="JSON: {\"frequency_caps\", \"quiet_hours\", \"priority\"}.")],
) -> None:
    """Replace the contact policy; every journey send follows it from now on."""
    from cdp.journeys.schemas import parse_policy
    from cdp.journeys.service import set_policy
    from cdp.store.db import write_transaction

    policy = parse_policy(_read_json(file))
    write_transaction(_store(), lambda conn: set_policy(conn, policy=policy, now=datetime.now(UTC)))
    out.print(f"contact policy set: {len(policy.frequency_caps)} frequency cap(s), "
              f"quiet hours {'on' if policy.quiet_hours else 'off'}, {len(policy.priority)} journey(s) ranked")


def main() -> None:
    app(prog_name="cdp")


if __name__ == "__main__":
    sys.exit(main())
