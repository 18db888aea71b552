"""The server's guard, one ASGI middleware in front of every route:

- **Host check** (DNS rebinding): bound to a loopback address, only loopback Host names are served.
- **Token** (``--token T``, required off loopback): ``Authorization: Bearer T``, or the session cookie that
  ``/login`` sets (HttpOnly, SameSite=Strict). API calls without it get 401, pages a redirect to ``/login``.
- **CSRF** on every state-changing request (POST, PUT, PATCH, DELETE): one from another site (Fetch metadata
  ``Sec-Fetch-Site``, or an ``Origin`` that is not this server) is refused; one that carries this app's
  cookies must carry the double-submit ``X-CSRF-Token`` header (the pages put it there), unless it
  authenticates with the bearer header, which no other site can send.
- **Uploads at once:** more than ``max_active_uploads`` multipart requests in flight get 503.
- **Body limit:** a declared ``Content-Length`` over the limit is refused unread; a streamed body is cut off
  when it passes it (413 either way).
- **Headers:** a strict Content-Security-Policy (no inline script; the API docs get what Swagger UI needs),
  ``nosniff``, ``DENY`` framing, referrers to this origin only (with ``no-referrer`` browsers send ``Origin: null``
  on form posts), ``no-store``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import quote

from .config import WebConfig

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

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        req = Request(scope)
        path, method = scope["path"], scope["method"]
        refusal = self.refuse(req, path, method)
        csrf = req.cookies.get(CSRF)
        page = not path.startswith(("/api/", "/static/", "/openapi.json"))  # only pages hand out the CSRF cookie
        new_csrf = None if (csrf and len(csrf) == 64) or not page else secrets.token_hex(32)
        scope.setdefault("state", {})["csrf"] = new_csrf or csrf
        started = False

        async def send_guarded(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
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
        upload = method in UNSAFE and req.headers.get("content-type", "").startswith("multipart/")
        if upload and self.uploading >= self.config.limits.max_active_uploads:
            await _error(503, f"{self.uploading} uploads are being checked at once, this server's limit; try again "
                              "in a moment", retry=True)(scope, receive, send_guarded)
            return
        self.uploading += upload
        limit, seen, over = self.config.limits.max_request_bytes, 0, False

        async def receive_limited() -> dict:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # the app sees the client go; the answer is ours
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_over(message: dict) -> None:
            if not over:
                await send_guarded(message)

        try:
            await self.app(scope, receive_limited, send_unless_over)
        except Exception:
            if not over:
                raise
        finally:
            self.uploading -= upload
        if over and not started:
            await _error(413, self.too_large())(scope, receive, send_guarded)

    def too_large(self) -> str:
        lim = self.config.limits
        return (f"request body over the limit of {lim.max_request_bytes:,} bytes ({lim.max_files} files of at most "
                f"{lim.max_upload_bytes:,} bytes each)")

    def cookie(self, name: str, value: str) -> str:
        flags = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.config.secure_cookies else "")
        return f"{name}={value}{flags}"

    def refuse(self, req: Any, path: str, method: str) -> Optional[ASGIApp]:
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
        by_bearer = token is not None and bearer.startswith("Bearer ") and same(bearer[7:].strip(), token)
        if token is not None and bearer and not by_bearer:
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


def _error(status: int, detail: str, *, auth: bool = False, retry: bool = False) -> ASGIApp:
    body = json.dumps({"detail": detail}).encode()

    async def respond(scope: Scope, receive: Callable, send: Callable) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if auth:
            headers.append((b"www-authenticate", b'Bearer realm="invcomp"'))
        if retry:
            headers.append((b"retry-after", b"2"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return respond


def _redirect(location: str) -> ASGIApp:
    async def respond(scope: Scope, receive: Callable, send: Callable) -> None:
        await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode()),
                                                                              (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return respond
