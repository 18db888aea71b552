"""The settings of one ``invcomp serve``: where it listens, where it keeps jobs, how many workers, and limits."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from invcomp.errors import InvcompError

LOOPBACK_NAMES = ("localhost",)
DEFAULT_MAX_PIXELS = 16_000_000  # a 16-megapixel photo; `invcomp encode` allows 64 Mpx, a server is shared


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) binds to this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Limits:
    """What one server accepts. Each refusal is an HTTP error with a one-line message."""

    max_upload_bytes: int = 20_000_000  # one file
    max_files: int = 16  # files in one request
    max_pixels: int = DEFAULT_MAX_PIXELS  # an image's pixel count (decoded from its header before any work)
    max_queue: int = 500  # jobs waiting (queued) at once; more are refused with 503
    max_active_uploads: int = 64  # upload requests being read and checked at once; more get 503
    max_uploads_per_client: int = 4  # of those, from one client address; more get 429
    read_timeout: float = 15.0  # seconds a request body may go without a byte arriving; then 408
    upload_seconds: float = 120.0  # seconds a whole request body may take to arrive; then 408
    max_iters: int = 2000  # the search iterations a request may ask for
    job_timeout: float = 900.0  # seconds a job of any kind may run: its worker is killed past it
    max_attempts: int = 3  # runs of a job whose worker died before it is failed
    max_auth_failures: int = 10  # wrong tokens from one client within auth_window; then 429 until it passes
    auth_window: float = 60.0

    @property
    def max_request_bytes(self) -> int:
        """A whole request body: every file at its limit, plus room for the form fields."""
        return self.max_files * self.max_upload_bytes + 1_000_000


@dataclass(frozen=True)
class WebConfig:
    """Everything :func:`invcomp.web.app.create_app` needs. ``data`` holds ``jobs.sqlite`` and ``jobs/ID/``."""

    data: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads_per_worker: int = 1
    token: Optional[str] = None
    device: str = "cpu"
    retention_seconds: float = 7 * 24 * 3600.0
    sweep_seconds: float = 60.0  # how often old jobs are looked for
    bench_dirs: tuple[Path, ...] = ()
    limits: Limits = field(default_factory=Limits)
    allowed_hosts: tuple[str, ...] = ()  # extra Host header values (tests use "testserver")
    secure_cookies: bool = False  # set the Secure flag (behind an HTTPS proxy)

    def check(self) -> None:
        """Refuse settings that are unsafe or cannot work, in one line."""
        if not is_loopback(self.host) and not self.token:
            raise InvcompError(f"--host {self.host} reaches other machines: give --token T (sent as "
                               "'Authorization: Bearer T' or the login cookie), or bind to 127.0.0.1")
        if self.token is not None and len(self.token) < 8:
            raise InvcompError("--token must be at least 8 characters")
        if self.workers < 0 or self.threads_per_worker < 1:
            raise InvcompError("--workers must be >= 0 and threads per worker >= 1")

    @property
    def db_path(self) -> Path:
        return self.data / "jobs.sqlite"

    @property
    def jobs_dir(self) -> Path:
        return self.data / "jobs"

    def hosts(self) -> set[str]:
        """Host header values accepted (DNS-rebinding guard): loopback names when bound there, else any."""
        if not is_loopback(self.host):
            return set()  # reachable from elsewhere, under a token: any name may point here
        return {self.host, "localhost", "127.0.0.1", "[::1]", *self.allowed_hosts}
