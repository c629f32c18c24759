"""The `wanda` command and its configuration, through the door a user uses: the command line."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, wait_for
from live_server import Wanda

from wanda.config import Config, ConfigError, load_config


def test_defaults_match_the_original_backend():
    config = load_config({}, env={})
    assert (config.host, config.port, config.camera) == ("0.0.0.0", 5000, "auto")


def test_command_line_beats_environment_beats_file_beats_defaults(tmp_path):
    file = tmp_path / "wanda.toml"
    file.write_text('port = 6000\nsim_fwhm = 4.5\nlog_level = "debug"\ncaptures = "~/frames"\n')
    env = {"WANDA_PORT": "7000", "WANDA_SIM_FWHM": "2.5"}
    config = load_config({"port": 8000}, env=env, config_file=file)
    assert config.port == 8000  # command line
    assert config.sim_fwhm == 2.5  # environment over file
    assert config.log_level == "DEBUG"  # file over default
    assert config.captures == Path("~/frames").expanduser()
    assert load_config({}, env=env, config_file=file).port == 7000
    assert load_config({}, env={}, config_file=file).port == 6000
    # WANDA_CONFIG names the file when --config is not given; a [wanda] table works too.
    file.write_text("[wanda]\nport = 6100\n")
    assert load_config({}, env={"WANDA_CONFIG": str(file)}).port == 6100


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"env": {"WANDA_PORT": "fifty"}}, "port (from $WANDA_PORT): 'fifty' is not a valid int"),
        ({"env": {"WANDA_CAMERA": "webcam"}}, "camera: must be one of auto, sim, picamera2"),
        ({"file": "colour = 'red'\n"}, "unknown setting 'colour'"),
        ({"file": "port = 5000.5\n"}, "port (from config file"),
        ({"file": "port = [\n"}, "config file"),
        ({"env": {"WANDA_SIM_FWHM": "0"}}, "sim_fwhm: must be 0.5..30 pixels"),
    ],
)
def test_bad_configuration_names_the_field(tmp_path, source, message):
    file = None
    if "file" in source:
        file = tmp_path / "bad.toml"
        file.write_text(source["file"])
    with pytest.raises(ConfigError, match=None) as caught:
        load_config({}, env=source.get("env", {}), config_file=file)
    assert message in str(caught.value)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]


@pytest.mark.slow
def test_bad_option_exits_2_with_one_line():
    result = subprocess.run([sys.executable, "-m", "wanda", "--camera", "webcam"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'webcam'" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "wanda"], capture_output=True, text=True, env={**os.environ, "WANDA_PORT": "x"}
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "wanda: error: port (from $WANDA_PORT): 'x' is not a valid int"


@pytest.mark.slow
def test_picamera2_off_the_pi_is_one_readable_line():
    result = subprocess.run(
        [sys.executable, "-m", "wanda", "--camera", "picamera2", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wanda: error: --camera picamera2: picamera2 is not importable")
    assert "--system-site-packages" in last


@pytest.mark.slow
def test_a_taken_port_is_one_readable_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "wanda", "--camera", "sim", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"wanda: error: cannot listen on 127.0.0.1:{port}")


def _read_some_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    while received.count(b"--frame") < 2:
        received += sock.recv(65536)
    return sock


def _stream_viewers(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=10) as response:
        return json.loads(response.read())["data"]["viewers"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_wanda_serves_the_sky_and_stops_cleanly_with_a_stalled_viewer(signum, tmp_path):
    # --camera auto: the simulated sky here, and the log says why.
    server = Wanda(tmp_path, args=["--camera", "auto", "--sim-fwhm", "2.5"])
    with server:
        log = server.log_text()
        assert "simulated sky, because picamera2 is not importable" in log  # auto says why
        assert re.search(rf"serving: open .*http://127\.0\.0\.1:{server.port}/", log), log

        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /video_feed HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reader = _read_some_stream(server.port)
        # The stalled viewer is served (the server has begun sending it frames)...
        wait_for(lambda: any(v["path"] == "/video_feed" for v in _stream_viewers(server.port)))
        stalled.settimeout(10)
        assert stalled.recv(1, socket.MSG_PEEK)
        # ...and then its buffers fill, the scenario itself: this wait proves nothing, it gives the
        # server time to get stuck writing to a client that never reads (bounded, and well below
        # the write timeout, after which the server would have dropped it already).
        time.sleep(1.0)

        server.process.send_signal(signum)
        assert server.wait() == 0
        rest = server.log_text()[len(log) :]
        assert "Traceback" not in rest and "stopped" in rest
        # The reading viewer's stream was ended by the server, not left hanging.
        reader.settimeout(5)
        while reader.recv(65536):
            pass
        stalled.close()
        reader.close()


def test_missing_libturbojpeg_stops_with_one_line_naming_the_package(monkeypatch, capsys):
    import types

    from wanda import cli

    class MissingLibrary:
        def __init__(self, *args, **kwargs):
            raise OSError("Unable to locate turbojpeg library automatically.")

    fake = types.ModuleType("turbojpeg")
    fake.TurboJPEG = MissingLibrary
    monkeypatch.setitem(sys.modules, "turbojpeg", fake)
    code = cli.main(["--camera", "sim", "--host", "127.0.0.1", "--port", str(free_port())])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "wanda: error: libjpeg-turbo is missing: install it with `sudo apt-get install libturbojpeg0`"


def test_loggers_clients_can_make_speak_are_rate_limited():
    from wanda.cli import RateLimit

    limit = RateLimit(burst=10, period=60.0)

    def record(at: float) -> logging.LogRecord:
        entry = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None, None)
        entry.created = at
        return entry

    passed = [limit.filter(record(1000.0 + i / 100)) for i in range(1000)]  # a flood of bad requests
    assert sum(passed) == 10
    later = record(1061.0)
    assert limit.filter(later) and "990 like it held back" in later.getMessage()
