"""The server's guard, one ASGI middleware in front of every route:

- **Host check** (DNS rebinding): bound to a loopback address, only loopback Host names are served.
- **Token** (``--token T``, required off loopback): ``Authorization: Bearer T``, or the session cookie that
  ``/login`` sets (HttpOnly, SameSite=Strict). API calls without it get 401, pages a redirect to ``/login``.
- **CSRF** on every state-changing request (POST, PUT, PATCH, DELETE): one from another site (Fetch metadata
  ``Sec-Fetch-Site``, or an ``Origin`` that is not this server) is refused; one that carries this app's
  cookies must carry the double-submit ``X-CSRF-Token`` header (the pages put it there), unless it
  authenticates with the bearer header, which no other site can send.
- **Token guesses:** a client (its address) that sent ``max_auth_failures`` wrong tokens (bearer or ``/login``)
  within ``auth_window`` seconds gets 429 for any further token it sends until the window passes: the right one
  too, or the answers would tell the guesses apart.
- **Uploads at once:** more than ``max_active_uploads`` multipart requests in flight get 503, and more than
  ``max_uploads_per_client`` from one client 429, so that a few slow clients cannot hold every slot.
- **Slow bodies:** a request body that goes ``read_timeout`` seconds without a byte, or takes more than
  ``upload_seconds`` in all, is cut off with 408 (its slot is free again).
- **Body limit:** a declared ``Content-Length`` over the limit is refused unread; a streamed body is cut off
  when it passes it (413 either way).
- **Headers:** a strict Content-Security-Policy (no inline script; the API docs get what Swagger UI needs),
  ``nosniff``, ``DENY`` framing, referrers to this origin only (with ``no-referrer`` browsers send ``Origin: null``
  on form posts), ``no-store``.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import deque
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import quote

from invcomp.web.config import WebConfig

SESSION, CSRF, CSRF_HEADER = "invcomp_session", "invcomp_csrf", "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = ("/login", "/static/", "/api/health")  # served without the token
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; style-src 'self' 'unsafe-inline' "
            "https://cdn.jsdelivr.net; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; frame-ancestors 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
           (b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-resource-policy", b"same-origin"),
           (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def session_value(token: str) -> str:
    """What the session cookie holds: derived from the token, so the cookie never carries it."""
    return hmac.new(token.encode(), b"invcomp-session", hashlib.sha256).hexdigest()


def same(a: Optional[str], b: Optional[str]) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def safe_next(path: Optional[str]) -> str:
    """A post-login redirect target: a local path only (never ``//host`` or a scheme)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or "\n" in path:
        return "/"
    return path


class Guard:
    """The middleware described in the module doc."""

    def __init__(self, app: ASGIApp, config: WebConfig) -> None:
        self.app, self.config = app, config
        self.hosts = config.hosts()
        self.uploading = 0  # multipart requests being read and checked (the event loop is one thread)
        self.uploads_by_client: dict[str, int] = {}
        self.auth_failures: dict[str, deque] = {}  # client -> times of its recent wrong tokens

    def locked_out(self, client: str) -> float:
        """Seconds until ``client`` may send a token again (0: it may now)."""
        lim, now = self.config.limits, time.monotonic()
        seen = self.auth_failures.get(client)
        while seen and now - seen[0] > lim.auth_window:
            seen.popleft()
        if not seen:
            self.auth_failures.pop(client, None)
            return 0.0
        return lim.auth_window - (now - seen[0]) if len(seen) >= lim.max_auth_failures else 0.0

    def auth_failed(self, client: str) -> None:
        if len(self.auth_failures) >= 10_000 and client not in self.auth_failures:  # bounded: forget the oldest
            self.auth_failures.pop(next(iter(self.auth_failures)))
        self.auth_failures.setdefault(client, deque(maxlen=max(1, self.config.limits.max_auth_failures))).append(
            time.monotonic())

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        req = Request(scope)
        path, method = scope["path"], scope["method"]
        client = (scope.get("client") or ("-", 0))[0]
        login = method == "POST" and path == "/login"
        refusal = self.refuse(req, path, method, client)
        csrf = req.cookies.get(CSRF)
        page = not path.startswith(("/api/", "/static/", "/openapi.json"))  # only pages hand out the CSRF cookie
        new_csrf = None if (csrf and len(csrf) == 64) or not page else secrets.token_hex(32)
        scope.setdefault("state", {})["csrf"] = new_csrf or csrf
        started = False

        async def send_guarded(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if login and message.get("status") == 401 and self.config.token is not None:
                    self.auth_failed(client)  # a wrong token typed into /login
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                docs = path in ("/docs", "/redoc") or path.startswith("/docs/")
                extra = [*HEADERS, (b"content-security-policy", (DOCS_CSP if docs else CSP).encode())]
                if not path.startswith("/static/"):
                    extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in have]
                if new_csrf is not None:
                    headers.append((b"set-cookie", self.cookie(CSRF, new_csrf).encode()))
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_guarded)
            return
        lim = self.config.limits
        upload = method in UNSAFE and req.headers.get("content-type", "").startswith("multipart/")
        if upload and self.uploading >= lim.max_active_uploads:
            await _error(503, f"{self.uploading} uploads are being checked at once, this server's limit; try again "
                              "in a moment", retry=True)(scope, receive, send_guarded)
            return
        if upload and self.uploads_by_client.get(client, 0) >= lim.max_uploads_per_client:
            await _error(429, f"{lim.max_uploads_per_client} uploads from this client are being read at once, this "
                              "server's limit per client; try again in a moment", retry=True)(scope, receive, send_guarded)
            return
        self.uploading += upload
        if upload:
            self.uploads_by_client[client] = self.uploads_by_client.get(client, 0) + 1
        limit, seen, cut, body_done = lim.max_request_bytes, 0, 0, False  # cut: 413 (too large) or 408 (too slow)
        deadline = time.monotonic() + lim.upload_seconds

        async def receive_limited() -> dict:
            nonlocal seen, cut, body_done
            if cut:
                return {"type": "http.disconnect"}
            if body_done:  # the body is in: what comes now is the client going (streamed answers wait for it)
                return await receive()
            try:
                wait = max(0.0, min(lim.read_timeout, deadline - time.monotonic()))
                message = await asyncio.wait_for(receive(), timeout=wait)
            except asyncio.TimeoutError:  # a client that sends too slowly: the app sees it go; the answer is ours
                cut = 408
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:  # the app sees the client go; the answer is ours
                    cut = 413
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_cut(message: dict) -> None:
            if not cut:
                await send_guarded(message)

        try:
            await self.app(scope, receive_limited, send_unless_cut)
        except Exception:
            if not cut:
                raise
        finally:
            self.uploading -= upload
            if upload:
                left = self.uploads_by_client.get(client, 1) - 1
                if left > 0:
                    self.uploads_by_client[client] = left
                else:
                    self.uploads_by_client.pop(client, None)
        if cut and not started:
            detail = self.too_large() if cut == 413 else (
                f"the request body came too slowly (nothing for {lim.read_timeout:g} s, or not all of it within "
                f"{lim.upload_seconds:g} s)")
            await _error(cut, detail)(scope, receive, send_guarded)

    def too_large(self) -> str:
        lim = self.config.limits
        return (f"request body over the limit of {lim.max_request_bytes:,} bytes ({lim.max_files} files of at most "
                f"{lim.max_upload_bytes:,} bytes each)")

    def cookie(self, name: str, value: str) -> str:
        flags = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.config.secure_cookies else "")
        return f"{name}={value}{flags}"

    def refuse(self, req: Any, path: str, method: str, client: str = "-") -> Optional[ASGIApp]:
        """The response that refuses this request, or ``None`` when it may go on."""
        host = req.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if self.hosts and name not in self.hosts:
            return _error(400, f"Host {name!r} is not served here (this server is bound to {self.config.host}; "
                               "use http://127.0.0.1:PORT/)")
        declared = req.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.config.limits.max_request_bytes:
            return _error(413, self.too_large())
        token = self.config.token
        bearer = req.headers.get("authorization", "")
        if token is not None and (bearer or (method == "POST" and path == "/login")):
            wait = self.locked_out(client)
            if wait > 0:  # checked before the token: the right one is refused too, or guesses could go on
                return _error(429, f"too many wrong tokens from this client; try again in {math.ceil(wait)} s",
                              retry=math.ceil(wait))
        by_bearer = token is not None and bearer.startswith("Bearer ") and same(bearer[7:].strip(), token)
        if token is not None and bearer and not by_bearer:
            self.auth_failed(client)
            return _error(401, "wrong bearer token", auth=True)
        by_cookie = token is not None and same(req.cookies.get(SESSION), session_value(token))
        if token is not None and not (by_bearer or by_cookie) and not path.startswith(OPEN_PATHS):
            if path.startswith("/api/") or method in UNSAFE:
                return _error(401, "this server needs its token: send 'Authorization: Bearer TOKEN', or log in at "
                                   "/login", auth=True)
            return _redirect("/login?next=" + quote(path, safe="/"))
        if method in UNSAFE and not by_bearer:
            site = req.headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return _error(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
            origin = req.headers.get("origin")
            if origin is not None and origin != f"{req.url.scheme}://{host}":
                return _error(403, "cross-origin request refused (its Origin is not this server)")
            if (CSRF in req.cookies or SESSION in req.cookies) and path != "/login" and \
                    not same(req.headers.get(CSRF_HEADER), req.cookies.get(CSRF)):
                return _error(403, "missing or wrong CSRF token: send the X-CSRF-Token header the page gives")
        return None


def _error(status: int, detail: str, *, auth: bool = False, retry: int = 0) -> ASGIApp:
    body = json.dumps({"detail": detail}).encode()

    async def respond(scope: Scope, receive: Callable, send: Callable) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if auth:
            headers.append((b"www-authenticate", b'Bearer realm="invcomp"'))
        if retry:
            headers.append((b"retry-after", str(2 if retry is True else int(retry)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return respond


def _redirect(location: str) -> ASGIApp:
    async def respond(scope: Scope, receive: Callable, send: Callable) -> None:
        await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode()),
                                                                              (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return respond
