"""A real `wanda` process for tests that need one: a browser, a fuzzer, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import free_port


class Wanda:
    """A `wanda` process on a fixed port that a test may stop and start again."""

    def __init__(self, root: Path, password: str = ""):
        self.root = root
        self.password = password
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.root / "wanda.log", "ab")  # noqa: SIM115  (the process owns it)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "wanda", "--camera", "sim", "--mount", "sim", "--host", "127.0.0.1",
                "--port", str(self.port), "--captures", str(self.root / "captures"),
                "--data-dir", str(self.root / "state"),
            ],
            stdout=log, stderr=log,
            env={**os.environ, "WANDA_PASSWORD": self.password},
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/api/health")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"wanda did not start: {(self.root / 'wanda.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)
            self.process = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.password}"} if self.password else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def delete(self, path: str) -> dict:
        return self.request("DELETE", path)

    def request(self, method: str, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers=self.headers(), method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **self.headers()},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]
