"""A real `wanda` process for the tests that need one: a browser, a fuzzer, signals, SIGKILL, limits
on open files, systemd's notify socket. The one helper for them all (bench/ has its own).

    with Wanda(tmp_path) as server:            # started, and stopped with SIGTERM at the end
        server.post("/api/camera/settings", {"iso": 800})

    server = Wanda(tmp_path, password="dark skies", env={"WANDA_WRITE_TIMEOUT": "2"},
                   args=["--sim-fwhm", "2.5"], open_files=384)
    server.start()                             # returns once /api/health answers
    server.process.send_signal(signal.SIGINT)  # the process is the test's to signal or kill
    assert server.wait() == 0
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers import free_port

START_TIMEOUT_S = 30.0


class Wanda:
    """A `wanda` process on the simulated sky and mount, on a port of its own that stays the same
    across restarts (a browser reconnects to it). Its output goes to ``log`` (appended to, so a
    restarted server's log follows the first one's).

    The environment is the test's without any ``WANDA_*`` setting of the machine it runs on, plus
    ``env``; ``password`` sets WANDA_PASSWORD. ``args`` go after the command line built here (the
    last of an option given twice wins: ``args=["--camera", "auto"]``). ``open_files`` limits the
    process's descriptors."""

    def __init__(
        self,
        root: Path,
        *,
        password: str = "",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        captures: Path | None = None,
        data_dir: Path | None = None,
        log: Path | None = None,
        open_files: int | None = None,
    ):
        self.root = root
        self.password = password
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.captures = captures if captures is not None else root / "captures"
        self.data_dir = data_dir if data_dir is not None else root / "state"
        self.log = log if log is not None else root / "wanda.log"
        self.open_files = open_files
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    # -- the process -------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "wanda",
            "--camera",
            "sim",
            "--mount",
            "sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--captures",
            str(self.captures),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDA_")}
        env["WANDA_ALPACA_DISCOVERY_PORT"] = "0"  # a free port: never 32227, which a real server may hold
        if self.password:
            env["WANDA_PASSWORD"] = self.password
        return env | self.extra_env

    def start(self) -> None:
        """Start the process and return once it answers ``GET /api/health``."""
        assert self.process is None or self.process.poll() is not None, "already running"
        limit = self.open_files

        def limit_open_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with open(self.log, "ab") as log:  # the process has its own descriptor for it
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                env=self.environment(),
                preexec_fn=limit_open_files if limit is not None else None,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"wanda exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                self.get("/api/health")
                return
            except (OSError, urllib.error.HTTPError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"wanda did not answer in {START_TIMEOUT_S:g} s:\n{self.log_text()[-3000:]}"
                    ) from None
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float = 15) -> int:
        """The exit code, once the process has ended (after a signal the test sent)."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Ask it to stop (SIGTERM: a clean shutdown) and return its exit code; None if it was not
        running. One that does not stop within ``timeout`` is killed, and the test fails."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"wanda did not stop within {timeout:g} s:\n{self.log_text()[-3000:]}") from None
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, whatever it was doing."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self) -> Wanda:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()  # if stopping failed

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- the API (blocking: for tests without a loop, or through asyncio.to_thread) -------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.password}"} if self.password else {}

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
        """The answer's ``data``; an error status raises urllib's HTTPError."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers(), **({"Content-Type": "application/json"} if data is not None else {})}
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["data"]

    def get(self, path: str) -> dict:
        return self.request("GET", path, timeout=10)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def delete(self, path: str) -> dict:
        return self.request("DELETE", path, timeout=10)
