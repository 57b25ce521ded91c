"""A real ``redis-server`` for the coordination tests: started per test session on a free port, no persistence.

No mock Redis: the Lua scripts, pub/sub and reconnects are what is under test. Where ``redis-server`` is not
installed the tests skip with the install hint, unless ``KIE_REQUIRE_REDIS=1`` (set by ``.ci/run``), which
turns the skip into a failure so CI always runs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REQUIRE_ENV = "KIE_REQUIRE_REDIS"
INSTALL_HINT = "install it with `apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`"


TIMEOUT_ENV = "KIE_TEST_SERVICE_TIMEOUT"
STARTUP_TIMEOUT = float(os.environ.get(TIMEOUT_ENV) or 120)
"""Seconds a helper service may take to answer: generous, as a busy 2-core machine starts processes slowly."""
STARTS = 3


def server_pid(port: int) -> int | None:
    """The ``process_id`` of the Redis answering on ``port`` (None: nothing answers yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.split(b"process_id:", 1)[1].count(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    value = data.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0]
    return int(value) if value.strip().isdigit() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One server process; ``stop``/``start`` keep the port, so clients can reconnect to the same URL."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = f"redis-server not found: {INSTALL_HINT}"
            if os.environ.get(REQUIRE_ENV, "").lower() in ("1", "true", "yes"):
                pytest.fail(message + f" ({REQUIRE_ENV} is set, so this is a failure, not a skip)")
            pytest.skip(message)
        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once *it* answers (its own pid in ``INFO``, not another process's).

        The free port is only free when it was picked: on a busy machine another process may take it before
        redis-server binds it, and redis-server then exits. A first start picks a new port and tries again.
        """
        first = self.proc is None and not self._started_once
        for attempt in range(STARTS):
            if attempt and first:
                self.port = _free_port()
            if self._launch():
                self._started_once = True
                return
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self._log_tail()}")

    def _launch(self) -> bool:
        log = self.folder / "redis-server.log"
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.folder),
                    "--loglevel",
                    "warning",
                ],
                stdout=sink,
                stderr=sink,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False  # exited (port taken): the caller may try another port
            if server_pid(self.port) == self.proc.pid:
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer within {STARTUP_TIMEOUT:g} s on port {self.port} "
            f"(set {TIMEOUT_ENV} to wait longer): {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return (self.folder / "redis-server.log").read_text(errors="replace")[-500:].strip() or "(no log)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:  # generous: a busy machine
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)
