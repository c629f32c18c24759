"""`wanda doctor`, through the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import fake_picamera2
import pytest
from helpers import free_port

from wanda import cli
from wanda.app import create_app
from wanda.config import Config
from wanda.doctor import FAIL, OK, check_solver


def doctor(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["doctor", "--host", "127.0.0.1", *args])
    return code, capsys.readouterr().out


def line(output: str, name: str) -> str:
    return next(row for row in output.splitlines() if row[6:].startswith(name))


def test_doctor_passes_on_a_sound_machine_and_warns_about_what_is_optional(capsys, tmp_path):
    code, out = doctor(
        capsys, "--camera", "sim", "--mount", "sim", "--port", str(free_port()), "--captures", str(tmp_path)
    )
    assert code == 0 and "all required checks pass" in out
    assert line(out, "python").startswith("ok") and line(out, "libturbojpeg").startswith("ok")
    assert line(out, "captures").startswith("ok") and str(tmp_path) in line(out, "captures")
    assert line(out, "picamera2").startswith("WARN")  # not needed for the simulated sky
    assert "python3-picamera2" in out and "--system-site-packages" in out


def test_doctor_fails_on_a_taken_port_with_the_fix(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = doctor(capsys, "--camera", "sim", "--port", str(port), "--captures", str(tmp_path))
    assert code == 1
    assert line(out, "port").startswith("FAIL") and "pick --port" in out
    assert "1 required check(s) failed: port" in out


@pytest.mark.parametrize("password", ["", "dark skies"])
async def test_doctor_passes_the_port_held_by_wanda_itself_and_says_so(aiohttp_server, config, capsys, password):
    """`wanda doctor` beside the running service: the port is WANDA's own, which is as it should be.
    With a password, WANDA's answer to the doctor (who does not send it) is a 401 that still says
    whose it is."""
    port = free_port()
    await aiohttp_server(create_app(dataclasses.replace(config, password=password)), port=port)
    args = ("--camera", "sim", "--mount", "sim", "--port", str(port), "--captures", str(config.captures))
    # On a thread: the doctor blocks on its request, and the server answers from this loop.
    code, out = await asyncio.to_thread(doctor, capsys, *args)
    assert line(out, "port").startswith("ok") and f"127.0.0.1:{port} is WANDA's own" in line(out, "port")
    assert ("with a password" in out) == bool(password)
    assert code == 0 and "all required checks pass" in out


def test_doctor_fails_when_the_camera_asked_for_is_missing(capsys, tmp_path):
    code, out = doctor(capsys, "--camera", "picamera2", "--port", str(free_port()), "--captures", str(tmp_path))
    assert code == 1 and line(out, "picamera2").startswith("FAIL")


def test_doctor_lists_the_cameras_picamera2_reports(capsys, tmp_path, monkeypatch):
    fake_picamera2.install(monkeypatch)
    code, out = doctor(capsys, "--camera", "picamera2", "--port", str(free_port()), "--captures", str(tmp_path))
    assert line(out, "picamera2").startswith("ok") and "imx477" in line(out, "picamera2")
    assert line(out, "tuning file").startswith("ok") and "sensor's default" in line(out, "tuning file")
    assert code == 0


def test_doctor_fails_on_a_tuning_file_libcamera_would_not_find(capsys, tmp_path, monkeypatch):
    fake_picamera2.install(monkeypatch)
    monkeypatch.setattr("wanda.backends.picam.TUNING_DIRS", (str(tmp_path / "{platform}"),))
    args = ("--camera", "picamera2", "--port", str(free_port()), "--captures", str(tmp_path))
    code, out = doctor(capsys, *args, "--tuning-file", "imx477_scientfic.json")
    assert code == 1 and line(out, "tuning file").startswith("FAIL") and "imx477_scientfic.json was not found" in out
    assert line(out, "picamera2").startswith("ok")  # the cameras are listed all the same
    (tmp_path / "pisp").mkdir()
    (tmp_path / "pisp" / "imx477_scientific.json").write_text("{}")
    code, out = doctor(capsys, *args, "--tuning-file", "imx477_scientific.json")
    assert code == 0 and line(out, "tuning file").endswith(str(tmp_path / "pisp" / "imx477_scientific.json"))


def test_doctor_reports_the_sensors_defective_pixel_correction_against_the_setting(capsys, tmp_path, monkeypatch):
    parameter = tmp_path / "dpc_enable"
    monkeypatch.setattr("wanda.backends.picam.SENSOR_DPC_PARAMETER", parameter)
    args = ("--camera", "sim", "--mount", "sim", "--port", str(free_port()), "--captures", str(tmp_path))
    code, out = doctor(capsys, *args)
    assert line(out, "sensor DPC").startswith("ok") and "no imx477 driver" in out
    parameter.write_text("1\n")  # the driver's default: faint stars go with the hot pixels
    code, out = doctor(capsys, *args)
    assert code == 0 and line(out, "sensor DPC").startswith("WARN")  # a warning, not a failure
    assert "on, but sensor_dpc is off" in out
    assert "options imx477 dpc_enable=0" in out and "sudo tee" in out
    code, out = doctor(capsys, *args, "--sensor-dpc", "on")
    assert code == 0 and line(out, "sensor DPC").startswith("ok")
    parameter.write_text("0\n")
    _, out = doctor(capsys, *args)
    assert line(out, "sensor DPC").startswith("ok") and "faint stars are kept" in out


def test_doctor_fails_when_captures_cannot_be_written(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out = doctor(capsys, "--camera", "sim", "--port", str(free_port()), "--captures", str(blocker / "captures"))
    assert code == 1 and line(out, "captures").startswith("FAIL")


def test_doctor_warns_when_anyone_on_the_network_could_drive_the_telescope(capsys, tmp_path):
    args = ("--camera", "sim", "--mount", "sim", "--port", str(free_port()), "--captures", str(tmp_path))
    code, out = doctor(capsys, *args, "--host", "0.0.0.0")
    assert code == 0 and line(out, "password").startswith("WARN") and "WANDA_PASSWORD" in out
    code, out = doctor(capsys, *args, "--host", "0.0.0.0", "--password", "s3cret")
    assert line(out, "password").startswith("ok")
    code, out = doctor(capsys, *args)  # 127.0.0.1: nobody else can reach it
    assert line(out, "password").startswith("ok")


def test_the_plate_solver_check_names_the_package_the_configured_optic_needs(tmp_path):
    default = check_solver(Config(camera="sim"))
    assert default.status == OK and '50 mm: 18.0"/px, 7.2° x 5.4°' in default.detail
    empty = tmp_path / "no-index"
    empty.mkdir()
    bare = check_solver(Config(camera="sim"), index_dirs=[empty])
    assert bare.status == FAIL and bare.fix.endswith("astrometry-data-tycho2-10-19")
    long_lens = check_solver(Config(camera="sim", focal_length_mm=600))  # a 0.7 x 0.5 degree field
    assert long_lens.status == FAIL and "astrometry-data-tycho2-10-19" not in long_lens.fix
    assert "astrometry-data-tycho2-0" in long_lens.fix
    missing = check_solver(Config(camera="sim"), solve_field=str(tmp_path / "no-solve-field"))
    assert missing.status == FAIL and "apt install astrometry.net" in missing.fix


def test_doctor_fails_a_long_lens_without_its_index_files(capsys, tmp_path):
    code, out = doctor(capsys, "--camera", "sim", "--captures", str(tmp_path), "--focal-length-mm", "600")
    line = next(line for line in out.splitlines() if "plate solver" in line)
    assert code == 1 and line.startswith("FAIL") and "600 mm" in line
    assert "sudo apt install --no-install-recommends astrometry-data-tycho2-0" in out
