"""Who is signed in to the console: logging in with the account's name and password (throttled per client
address as every login is) or an API key, the signed session cookie, its CSRF token and its idle timeout.

The cookie holds the account id, a fingerprint of the credential used, the CSRF token, and when
the session began and was last used: it ends after ``session_idle_seconds`` unused, or
LIFETIME_SECONDS after the login. It is signed (not encrypted) with a key derived from the
store's secret key, so every web process of one store accepts it; a rotated key keeps opening
sessions signed before the rotation until the old key is removed. Each page checks that the
credential is still good: a new password or a rotated API key ends the sessions opened with the
old one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, Response, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response as BaseResponse

from gateway.accounts import API_KEY_PREFIX, WRONG_LOGIN, check_api_key, check_password, key_hash
from gateway.api.context import current_runtime
from gateway.errors import AuthError
from gateway.login_throttle import LoginThrottle, Throttled
from gateway.runtime import Runtime
from gateway.store.models import Account, ApiKey
from gateway.vault import vault_of

COOKIE = "eventgw_console"
PURPOSE = "eventgw console session cookie"
"""What the signing key is derived for (HKDF info): no other use of the secret key gets the same key."""
CSRF_FIELD = "csrf"
LIFETIME_SECONDS = 12 * 3600
"""However busy, a session ends this long after its login: a copied cookie is not good forever."""

blueprint = Blueprint("console_login", __name__, template_folder="templates")


class NotSignedIn(Exception):
    """The request has no live console session (none, idle too long, or its credential is gone)."""


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure when the console is reached over https (or public_url is)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def configure(app: Flask, runtime: Runtime) -> None:
    """Sign the app's session cookies with keys derived from the store's secret keys, and set their flags."""
    keys = vault_of(runtime.engine.dialect).derive(PURPOSE)
    app.secret_key = keys[0]
    app.config.update(
        SECRET_KEY_FALLBACKS=keys[1:],
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=urlsplit(runtime.settings.public_url).scheme == "https",
    )
    app.session_interface = _Sessions()
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(blueprint)


def secure_headers(response: Response) -> Response:
    """What every console answer tells the browser: run only the console's own assets, in no frame, keep no
    copy of a page, and send no address of it elsewhere."""
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


blueprint.after_request(secure_headers)


def csrf_token() -> str:
    """The session's CSRF token, made on first use; every console form sends it back."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf(form_request: Request) -> None:
    """Refuse (400) a form whose CSRF token is missing or not the session's."""
    given = form_request.form.get(CSRF_FIELD, "")
    expected = session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadRequest("the form has expired or did not come from this console; reload the page and try again")


def _proof(kind: str, secret_hash: str) -> str:
    """What the session keeps of the credential it was opened with: enough to tell it changed, nothing more."""
    return kind + ":" + hashlib.sha256(f"{kind}\0{secret_hash}".encode()).hexdigest()[:32]


def signed_in_account() -> int:
    """The account of the request's live session, whose last-use time moves on; NotSignedIn otherwise."""
    account_id, proof = session.get("account"), session.get("proof")
    seen, since = session.get("seen"), session.get("since")
    if not (isinstance(account_id, int) and isinstance(proof, str) and isinstance(seen, int)
            and isinstance(since, int)):
        raise NotSignedIn()
    rt = current_runtime()
    now = time.time()
    if now - seen > rt.settings.session_idle_seconds or now - since > LIFETIME_SECONDS:
        session.clear()
        raise NotSignedIn()
    if not _proof_holds(rt, account_id, proof):
        session.clear()
        raise NotSignedIn()
    session["seen"] = int(now)
    return account_id


def _proof_holds(rt: Runtime, account_id: int, proof: str) -> bool:
    """Whether the credential the session was opened with still lets the account in."""
    kind = proof.partition(":")[0]
    with rt.read_sessions() as db:
        if kind == "password":
            stored = db.scalar(select(Account.password_hash).where(Account.id == account_id))
            return stored is not None and hmac.compare_digest(_proof("password", stored), proof)
        hashes = db.scalars(select(ApiKey.key_hash).where(ApiKey.account_id == account_id))
        return any(hmac.compare_digest(_proof("key", stored), proof) for stored in hashes)


def _sign_in(name: str, secret: str) -> tuple[int, str]:
    """The account id and session proof of a login form; AuthError (or Throttled) when it does not let in."""
    rt = current_runtime()
    if secret.startswith(API_KEY_PREFIX):
        with rt.read_sessions() as db:
            account_id = check_api_key(db, secret)
            account_name = db.scalar(select(Account.name).where(Account.id == account_id))
        if name and name != account_name:
            raise AuthError(WRONG_LOGIN)
        return account_id, _proof("key", key_hash(secret))
    account_id = check_password(rt.sessions, name, secret, address=request.remote_addr,
                                throttle=LoginThrottle.of(rt.settings))
    with rt.read_sessions() as db:
        stored = db.scalar(select(Account.password_hash).where(Account.id == account_id)) or ""
    return account_id, _proof("password", stored)


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another host)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.overview")


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int] | str:
    """The login form, and signing in with it."""
    context: dict[str, Any] = {"next": request.values.get("next", ""), "name": "", "error": None}
    if request.method == "GET":
        return render_template("console/login.html", **context)
    check_csrf(request)
    name, secret = request.form.get("name", "").strip(), request.form.get("secret", "")
    context["name"] = name
    try:
        account_id, proof = _sign_in(name, secret)
    except Throttled as exc:
        context["error"] = str(exc)
        page = Response(render_template("console/login.html", **context), status=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except AuthError:
        context["error"] = "Wrong account name, password or API key."
        return render_template("console/login.html", **context), 401
    session.clear()  # a new session for a new login: nothing from before carries over
    now = int(time.time())
    session.update(account=account_id, proof=proof, seen=now, since=now)
    csrf_token()
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> BaseResponse:
    """End the session."""
    check_csrf(request)
    session.clear()
    return redirect(url_for("console_login.login"))
