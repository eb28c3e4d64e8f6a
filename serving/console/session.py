"""Signing in and out of the console, the signed-in user of a page, and the in-process API client of pages."""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from cdp.auth.sign_in_limit import clear_failed_sign_ins, record_failed_sign_in, sign_in_wait
from cdp.auth.users import Session, sign_in, sign_out
from cdp.errors import CdpError
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import SESSION_COOKIE, csrf_matches, session_of

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(route_class=StrictJSONRoute, include_in_schema=False)
SIGN_IN_COOKIE = "cdp_sign_in"  # the sign-in form's CSRF token (double submit: no session exists yet)
MAX_FORM_BYTES = 4096


class SignInRequired(Exception):
    """A page asked for without a live session: the browser goes to the sign-in page, then back."""


class ApiProblem(Exception):
    """A ``/v1`` answer other than success, in the API's own words."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def console_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        raise SignInRequired()
    return session


ConsoleSession = Annotated[Session, Depends(console_session)]


class Api:
    """The ``/v1`` APIs as the signed-in user calls them, in process."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def get(self, path: str, **params: Any) -> Any:
        answer = await self._client.get(path, params={k: v for k, v in params.items() if v is not None})
        if answer.status_code >= 400:
            body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            error = body.get("error", body) if isinstance(body, dict) else {}
            raise ApiProblem(answer.status_code, error.get("code", "error"),
                             error.get("message") or error.get("detail") or f"the API answered {answer.status_code}")
        return answer.json()

    async def get_or_none(self, path: str, **params: Any) -> Any:
        """Like ``get``; ``None`` when the user's role may not read it (the page leaves that part out)."""
        try:
            return await self.get(path, **params)
        except ApiProblem as problem:
            if problem.status == 403:
                return None
            raise


@asynccontextmanager
async def api_for(request: Request) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=request.app)
    cookies = {SESSION_COOKIE: request.cookies.get(SESSION_COOKIE, "")}
    async with httpx.AsyncClient(transport=transport, base_url="http://console.internal", cookies=cookies,
                                 timeout=60) as client:
        yield Api(client)


def render(request: Request, name: str, session: Session | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": session, "user": session.user if session else None,
                                                      **context}, status_code=status_code)


def _secure(request: Request) -> bool:
    """Secure cookies, except over plain HTTP on loopback (the demo), where browsers may drop them."""
    if request.url.scheme == "https":
        return True
    try:
        return not ipaddress.ip_address(request.url.hostname or "").is_loopback
    except ValueError:
        return request.url.hostname != "localhost"


def _safe_next(value: str | None) -> str:
    # Only a path of this console: an open redirect would make our sign-in page a phishing relay.
    return value if value and value.startswith("/ui") and not value.startswith("//") else "/ui"


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}
    return {key: values[0] for key, values in parse_qs(raw.decode(errors="replace")).items()}


@router.get("/ui/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _sign_in_form(request, next=_safe_next(next))


def _sign_in_form(request: Request, *, next: str, error: str | None = None, email: str = "",
                  status_code: int = 401) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    page = render(request, "sign_in.html", None, status_code=status_code if error else 200, csrf=token, next=next,
                  error=error, email=email)
    page.set_cookie(SIGN_IN_COOKIE, token, httponly=True, samesite="lax", secure=_secure(request), path="/ui")
    return page


@router.post("/ui/sign-in")
async def sign_in_submit(request: Request) -> Response:
    form = await _form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    next_page = _safe_next(form.get("next"))
    if not expected or not hmac.compare_digest(expected.encode(), form.get("csrf", "").encode()):
        return _sign_in_form(request, next=next_page, error="The sign-in form expired: please try again.")
    settings = request.app.state.settings
    email, address = form.get("email", ""), request.client.host if request.client else ""
    outcome = await run_in_threadpool(_try_sign_in, request.app.state.engine, email=email, address=address,
                                      password=form.get("password", ""),
                                      lifetime=timedelta(hours=settings.console_session_hours))
    if isinstance(outcome, timedelta):
        minutes = max(1, math.ceil(outcome.total_seconds() / 60))
        return _sign_in_form(request, next=next_page, email=email, status_code=429,
                             error=f"Too many failed sign-ins for this email: try again in {minutes} "
                                   f"minute{'s' if minutes > 1 else ''}.")
    if isinstance(outcome, CdpError):
        return _sign_in_form(request, next=next_page, error=outcome.message[:1].upper() + outcome.message[1:] + ".",
                             email=email)
    _session, token = outcome
    answer = RedirectResponse(next_page, status_code=303)
    answer.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=_secure(request), path="/",
                      max_age=int(settings.console_session_hours * 3600))
    answer.delete_cookie(SIGN_IN_COOKIE, path="/ui")
    return answer


def _try_sign_in(engine: Engine, *, email: str, address: str, password: str,
                 lifetime: timedelta) -> tuple[Session, str] | timedelta | CdpError:
    """A session and its token; or how long to wait after too many failures; or why it was refused."""
    now = datetime.now(UTC)
    with reader(engine).connect() as conn:
        wait = sign_in_wait(conn, email=email, address=address, now=now)
    if wait is not None:
        return wait

    def signed_in(conn: Connection) -> tuple[Session, str]:
        found = sign_in(conn, email=email, password=password, now=now, lifetime=lifetime)
        clear_failed_sign_ins(conn, email=email, address=address)
        return found

    try:
        return write_transaction(engine, signed_in)
    except CdpError as error:
        write_transaction(engine, lambda conn: record_failed_sign_in(conn, email=email, address=address, now=now))
        return error


@router.post("/ui/sign-out")
async def sign_out_submit(request: Request) -> Response:
    form = await _form(request)
    session = session_of(request)
    if session is not None and csrf_matches(session, form.get("csrf")):
        token = request.cookies[SESSION_COOKIE]
        write_transaction(request.app.state.engine, lambda conn: sign_out(conn, token=token))
    answer = RedirectResponse("/ui/sign-in", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


def install(app: FastAPI) -> None:
    """Static files, and the answers to a page without a session or with an API refusal."""
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _to_sign_in(request: Request, _error: SignInRequired) -> Response:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/sign-in?next={quote(path)}", status_code=303)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, problem: ApiProblem) -> Response:
        session = session_of(request)
        return render(request, "problem.html", session, status_code=problem.status, problem=problem)
