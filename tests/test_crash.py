"""Crash consistency: a real `wanda` process, killed with SIGKILL at random moments while it
captures (single stills, sessions, a resumed session, a full disk), then started again.

After every kill and again after every restart:

- every image under a final name is whole (JPEGs decode without a warning and end with EOI, FITS
  files read back with astropy to the shape their header promises, to the last byte);
- files seen before are still there, byte for byte the same (nothing overwritten, nothing lost),
  and every capture the API confirmed is on disk;
- the gallery never lists a temporary (also while writes are in flight), and after the restart's
  recovery no hidden temporary is left;
- every ``session_metadata.json`` parses and lists exactly the frame files on disk (before the
  restart: all of them but at most the one saved just before the kill);
- a session that was running when killed is ``interrupted`` after the restart, and resuming it
  continues the numbering without touching the frames already taken.

The kills come after seeded random delays: CRASH_SEED=<n> replays (or explores) another sequence.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from astropy.io import fits
from helpers import fill, mounted_tmpfs
from live_server import Wanda

from wanda.jpeg import JpegEncoder

SEED = int(os.environ.get("CRASH_SEED", "20261128"))
ROUNDS = 7
SESSION_FRAMES = 80  # at >= 0.05 s a frame a session outlives the longest delay before the kill
KILL_DELAY = (0.2, 1.5)
METADATA = "session_metadata.json"
FINISHED = ("completed", "stopped", "error", "interrupted")
NUMBERED = re.compile(r"^(?P<stem>[a-z]+)_(?P<number>\d{4,})\.(?P<ext>jpg|fits|json)$")
IMAGE_SUFFIXES = (".jpg", ".fits")
JPEG = JpegEncoder()


# -- the server: a real process, so that it can be killed -----------------------------------------


class Server:
    """A live `wanda` (tests/live_server.py) with an HTTP session of the test's, started again
    after each kill on the same folders."""

    def __init__(self, workdir: Path, captures: Path, env: dict[str, str] | None = None):
        self.live = Wanda(workdir, captures=captures, env=env)
        self.captures = captures
        self.url = self.live.url
        self.http: aiohttp.ClientSession | None = None
        self.killed = False

    async def start(self) -> None:
        assert not self.live.running
        await asyncio.to_thread(self.live.start)  # returns once it answers
        self.killed = False
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, whatever it was doing."""
        self.killed = True  # first: the loops' failing requests are expected from now on
        await asyncio.to_thread(self.live.kill)
        if self.http is not None:
            await self.http.close()
            self.http = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.live.log_text()[-chars:]

    async def request(self, method: str, path: str, body: dict | None = None, **params) -> tuple[int, dict]:
        assert self.http is not None
        async with self.http.request(method, self.url + path, json=body, params=params or None) as response:
            return response.status, await response.json()

    async def get(self, path: str, **params) -> dict:
        status, payload = await self.request("GET", path, **params)
        assert status == 200, (path, params, payload)
        return payload["data"]

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        return await self.request("POST", path, body)

    async def fetch(self, url: str) -> bytes:
        assert self.http is not None
        async with self.http.get(self.url + url) as response:
            assert response.status == 200, url
            return await response.read()


async def poll(check, timeout: float = 15.0, pause: float = 0.05, what: str = "condition"):
    """Await ``check()`` until it is truthy; fail after ``timeout`` seconds of polling."""
    for _ in range(int(timeout / pause)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(pause)
    raise AssertionError(f"{what}: not reached in {timeout} s")


async def session_status(server: Server) -> dict:
    return await server.get("/api/session/status")


async def wait_session_idle(server: Server) -> dict:
    async def idle():
        status = await session_status(server)
        return status if not status["active"] else None

    return await poll(idle, what="the session to end")


# -- what is on disk --------------------------------------------------------------------------------


def assert_whole(path: Path) -> None:
    """The image (or JSON) under this final name is complete."""
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # libjpeg and astropy only warn about truncated files
        if path.suffix == ".jpg":
            assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", f"{path}: not a whole JPEG ({len(data)} bytes)"
            pixels = JPEG.decode(data)
            assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0, f"{path}: {pixels.shape}"
        elif path.suffix == ".fits":
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdus:
                header = hdus[0].header
                shape = tuple(header[f"NAXIS{i}"] for i in range(header["NAXIS"], 0, -1))
                assert shape and hdus[0].data is not None and hdus[0].data.shape == shape, f"{path}: {shape}"
                info = hdus.fileinfo(0)
                assert len(data) == info["datLoc"] + info["datSpan"], f"{path}: {len(data)} bytes, header says more"
        elif path.suffix == ".json":
            assert isinstance(json.loads(data), dict), path
        else:
            raise AssertionError(f"unexpected file {path}")


def stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Tree:
    images: dict[str, list[str]] = field(default_factory=dict)  # folder ("" = root) -> image names
    sidecars: list[str] = field(default_factory=list)  # relative paths of every other JSON file
    hidden: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)


def scan(root: Path) -> Tree:
    tree = Tree()
    if not root.is_dir():
        return tree
    tree.images[""] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            tree.hidden.append(entry.name)
        elif entry.is_dir():
            tree.folders.append(entry.name)
            tree.images[entry.name] = []
            for inner in sorted(entry.iterdir()):
                relative = f"{entry.name}/{inner.name}"
                if inner.name.startswith("."):
                    tree.hidden.append(relative)
                elif inner.suffix in IMAGE_SUFFIXES:
                    tree.images[entry.name].append(inner.name)
                elif inner.suffix == ".json" and inner.name != METADATA:
                    tree.sidecars.append(relative)
                else:
                    assert inner.name == METADATA, f"unexpected {relative}"
        elif entry.suffix in IMAGE_SUFFIXES:
            tree.images[""].append(entry.name)
        elif entry.suffix == ".json":
            if entry.name != "session_config.json":
                tree.sidecars.append(entry.name)
        else:
            raise AssertionError(f"unexpected file {entry}")
    return tree


def number(name: str) -> int:
    match = NUMBERED.match(name)
    assert match, name
    return int(match["number"])


def primary_frames(folder: Path, settings: dict) -> list[str]:
    """The files that name the frames of a session: its frame type, its first format."""
    extension = "jpg" if settings.get("file_format", "jpeg").startswith("jpeg") else "fits"
    names = []
    for path in folder.iterdir():
        match = NUMBERED.match(path.name)
        if match and match["stem"] == settings["frame_type"] and match["ext"] == extension:
            names.append(path.name)
    return sorted(names, key=number)


def read_metadata(folder: Path) -> dict | None:
    """The session's metadata (None if the folder has none); it must parse whenever it exists."""
    path = folder / METADATA
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise AssertionError(f"{path} does not parse ({exc}): {text[:200]!r}") from None
    assert isinstance(metadata, dict), path
    return metadata


def check_metadata(folder: Path, metadata: dict, *, exact: bool) -> None:
    """The frame list agrees with the frame files on disk. ``exact=False`` (right after a kill):
    one frame saved just before the kill may still be missing from the list."""
    frames = metadata["frames"]
    listed = [frame["file"] for frame in frames]
    on_disk = primary_frames(folder, metadata["settings"])
    assert metadata["captured_images"] == len(frames), (folder.name, metadata["captured_images"], listed)
    assert [number(name) for name in listed] == sorted({number(name) for name in listed}), (folder.name, listed)
    if exact:
        assert listed == on_disk, f"{folder.name}: metadata lists {listed}, the disk has {on_disk}"
    else:
        assert set(listed) <= set(on_disk), f"{folder.name}: listed {sorted(set(listed) - set(on_disk))} are missing"
        unlisted = sorted(set(on_disk) - set(listed), key=number)
        assert len(unlisted) <= 1 and all(number(n) > max(map(number, listed), default=0) for n in unlisted), (
            f"{folder.name}: {unlisted} on disk but not in the metadata"
        )
    for frame in frames:
        for name in frame.get("files", [frame["file"]]):
            assert (folder / name).is_file(), f"{folder.name}: {name} is listed but missing"
        if not frame.get("recovered"):  # a frame recorded after its save has its sidecar
            notes = json.loads((folder / Path(frame["file"]).with_suffix(".json")).read_text())
            assert (notes["frame"], notes["session"]) == (frame["index"], metadata["name"]), (folder.name, frame, notes)


@dataclass
class Record:
    """What the test knows across kills and restarts."""

    verified: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # whole files and their stamps
    notes: dict[str, dict] = field(default_factory=dict)  # the sidecars as first seen
    confirmed: set[str] = field(default_factory=set)  # files a 200 answer named
    temporaries_seen: int = 0  # left by kills (swept at the restart): the kills did land mid-write


def measured_once(before: dict, path: Path) -> bool:
    """Whether a frame's sidecar changed only by gaining its measurement (wanda/storage/review.py
    rewrites each once, after the save): anything else is a file rewritten."""
    after = json.loads(path.read_text())
    return (
        "measurement" not in before
        and "measurement" in after
        and {k: v for k, v in after.items() if k != "measurement"} == before
    )


def check_files(root: Path, record: Record, tree: Tree) -> None:
    """Earlier files unchanged, new ones whole, confirmed ones present."""
    for relative, seen in record.verified.items():
        path = root / relative
        assert path.is_file(), f"{relative} was there and is gone"
        if stamp(path) != seen and relative in record.notes and measured_once(record.notes[relative], path):
            # The measure thread's one rewrite: the same notes, the frame's stars and HFR added.
            record.verified[relative] = stamp(path)
            record.notes[relative] = json.loads(path.read_text())
            continue
        assert stamp(path) == seen, f"{relative} was rewritten (a number reused?)"
    present = {f"{folder}/{name}" if folder else name for folder, names in tree.images.items() for name in names}
    for relative in sorted(present | set(tree.sidecars)):
        if relative not in record.verified:
            assert_whole(root / relative)
            record.verified[relative] = stamp(root / relative)
            if relative.endswith(".json"):
                record.notes[relative] = json.loads((root / relative).read_text())
    missing = record.confirmed - present - set(tree.sidecars)
    assert not missing, f"the API confirmed {sorted(missing)}, they are not on disk"


def check_after_kill(root: Path, record: Record) -> dict[str, str]:
    """Right after SIGKILL, before any recovery: the statuses the kill left on disk."""
    tree = scan(root)
    record.temporaries_seen += len(tree.hidden)
    check_files(root, record, tree)
    statuses = {}
    for name in tree.folders:
        metadata = read_metadata(root / name)
        if metadata is None:
            assert tree.images[name] == [], f"{name}: images in a folder without session metadata"
            continue
        check_metadata(root / name, metadata, exact=False)
        statuses[name] = metadata["status"]
    return statuses


async def check_after_restart(server: Server, record: Record, left: dict[str, str]) -> dict[str, dict]:
    """After a restart (nothing running yet): the recovery's result, on disk and through the API.
    Returns the metadata of every session."""
    root = server.captures
    tree = scan(root)
    assert tree.hidden == [], f"hidden files left after the recovery: {tree.hidden}"
    check_files(root, record, tree)

    listed = (await server.get("/api/captures"))["files"]
    assert sorted(listed) == sorted(tree.images.get("", [])), f"the gallery lists {listed}"
    folders = (await server.get("/api/captures/folders"))["folders"]
    assert folders == tree.folders
    for name in folders:
        listed = (await server.get("/api/captures", folder=name))["files"]
        assert sorted(listed) == sorted(tree.images[name]), f"{name}: the gallery lists {listed}"

    sessions = {s["folder"]: s for s in (await server.get("/api/sessions"))["sessions"]}
    everything = {}
    for name in tree.folders:
        metadata = read_metadata(root / name)
        if metadata is None:
            assert tree.images[name] == [] and name not in sessions, name
            continue
        check_metadata(root / name, metadata, exact=True)
        assert metadata["status"] in FINISHED, (name, metadata["status"])
        if left.get(name) == "running":
            assert metadata["status"] == "interrupted", f"{name} was running when killed: {metadata['status']}"
        else:
            assert metadata["status"] == left.get(name, metadata["status"]), (name, left.get(name), metadata["status"])
        api = sessions.get(name)
        assert api is not None, f"{name} is not in /api/sessions"
        assert (api["status"], api["captured_images"]) == (metadata["status"], len(metadata["frames"])), (api, name)
        everything[name] = metadata
    assert set(sessions) == set(everything)
    status = await session_status(server)
    assert status["active"] is False, status
    return everything


def resumable(sessions: dict[str, dict], at_least: int = 1) -> list[str]:
    return sorted(
        name
        for name, m in sessions.items()
        if m["status"] in ("interrupted", "stopped", "error") and m["total_images"] - len(m["frames"]) >= at_least
    )


async def check_resume(server: Server, record: Record, name: str) -> None:
    """Resume a session, let it take two frames more, stop it: it went on where it was, with
    higher numbers, and left the frames taken before alone."""
    folder = server.captures / name
    before = read_metadata(folder)
    assert before is not None
    highest = max((number(p.name) for p in folder.iterdir() if NUMBERED.match(p.name)), default=0)
    status, payload = await server.post("/api/session/resume", {"name": name})
    assert status == 200, payload
    assert (payload["data"]["status"], payload["data"]["folder"]) == ("running", name)
    assert payload["data"]["captured_images"] == len(before["frames"])
    again, payload = await server.post("/api/session/resume", {"name": name})
    assert again == 409, payload

    async def two_more():
        status = await session_status(server)
        return not status["active"] or status["captured_images"] >= len(before["frames"]) + 2

    await poll(two_more, what=f"two frames of the resumed {name}")
    status, payload = await server.post("/api/session/stop", {})
    assert status in (200, 409), payload  # 409: it completed meanwhile
    ended = await wait_session_idle(server)
    assert ended["status"] in ("stopped", "completed"), ended

    after = read_metadata(folder)
    assert after is not None and after["status"] == ended["status"]
    check_metadata(folder, after, exact=True)
    old = len(before["frames"])
    assert after["frames"][:old] == before["frames"], "the frames taken before the resume changed"
    new = after["frames"][old:]
    assert len(new) >= 2 or after["status"] == "completed", new
    assert all(number(frame["file"]) > highest for frame in new), (highest, new)
    assert [frame["index"] for frame in new] == list(range(old + 1, old + 1 + len(new)))
    assert len(after["resumed"]) == len(before["resumed"]) + 1
    check_files(server.captures, record, scan(server.captures))  # the old files are untouched


# -- the work the kills interrupt -----------------------------------------------------------------


async def capture_loop(server: Server, record: Record, allowed: tuple[int, ...]) -> None:
    """Single captures back to back until the kill; every confirmed file is remembered."""
    while True:
        try:
            status, payload = await server.post("/api/camera/capture", {})
        except (aiohttp.ClientError, OSError):
            if server.killed:
                return
            raise
        assert status in allowed, payload
        if status == 200:
            data = payload["data"]
            folder = str(Path(data["path"]).parent)
            prefix = "" if folder == "." else folder + "/"
            record.confirmed.update(prefix + name for name in [*data["files"], data["sidecar"]])
        else:
            await asyncio.sleep(0.05)  # refused (a session has the camera): ask again in a moment


async def gallery_loop(server: Server, folder: str | None) -> int:
    """List the gallery while files are being written: never a temporary; the newest JPEG listed
    is whole when fetched. Returns how many listings it checked."""
    listings = 0
    while True:
        try:
            for query in ({}, {"folder": folder} if folder else None):
                if query is None:
                    continue
                status, payload = await server.request("GET", "/api/captures", **query)
                if status == 404 and query:
                    continue  # the session's folder is not there yet
                assert status == 200, payload
                items = payload["data"]["items"]
                bad = [i["name"] for i in items if i["name"].startswith(".") or not i["name"].endswith(IMAGE_SUFFIXES)]
                assert not bad, f"the gallery lists {bad}"
                listings += 1
                jpeg = next((i for i in items if i["name"].endswith(".jpg")), None)
                if jpeg is not None:
                    data = await server.fetch(jpeg["url"])
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        assert data[-2:] == b"\xff\xd9" and JPEG.decode(data).size, jpeg["name"]
        except (aiohttp.ClientError, OSError):
            if server.killed:
                return listings
            raise
        await asyncio.sleep(0.1)  # a browser's pace, not a wait for anything


def writing(folders: list[Path]) -> bool:
    """Whether a hidden temporary (a file being written) is in one of these folders."""
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                if any(e.name.startswith(".") and e.name.endswith(".tmp") for e in entries):
                    return True
        except FileNotFoundError:
            pass
    return False


async def run_then_kill(server: Server, delay: float, loops: list, mid_write: list[Path] | None = None) -> None:
    """Run the loops, kill the server after ``delay`` seconds (with ``mid_write``: at the first
    moment after that when a file is being written in one of those folders, if one comes within
    a second), and re-raise what the loops found."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    failed = []
    try:
        # The kill's moment, seeded and random: the scenario itself (the loops work meanwhile);
        # what is checked is the disk after the kill, not anything the wait shows.
        await asyncio.sleep(delay)
        if mid_write:
            for _ in range(500):
                if writing(mid_write):
                    # The gallery, while a temporary is there (a FITS file takes milliseconds to
                    # write): it must not list it.
                    for folder in mid_write:
                        query = {"folder": folder.name} if folder != server.captures else {}
                        status, payload = await server.request("GET", "/api/captures", **query)
                        assert status == 200, payload
                        hidden = [name for name in payload["data"]["files"] if name.startswith(".")]
                        assert not hidden, f"the gallery lists {hidden}"
                    break
                await asyncio.sleep(0.002)
        failed = [t for t in tasks if t.done() and t.exception() is not None]
    finally:
        await server.kill()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task in failed:
        raise task.exception()
    for result in results:
        if isinstance(result, AssertionError):
            raise result


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_random_kills_leave_whole_files_and_agreeing_metadata(tmp_path):
    rng = random.Random(SEED)
    root = tmp_path / "captures"
    server = Server(tmp_path, root)
    record = Record()
    kinds = ["session", *rng.sample(["captures", "mixed", "resume", "session", "resume", "captures"], ROUNDS - 1)]
    history: list[str] = []
    resumes_checked = 0
    left: dict[str, str] = {}
    try:
        for round_no in range(ROUNDS + 1):
            await server.start()
            sessions = await check_after_restart(server, record, left)
            interrupted = [name for name, status in left.items() if status == "running"]
            if interrupted and (resumes_checked == 0 or rng.random() < 0.25):
                await check_resume(server, record, rng.choice(interrupted))
                resumes_checked += 1
                sessions = {n: read_metadata(root / n) for n in sessions}
            if round_no == ROUNDS:
                break

            kind = kinds[round_no]
            if kind == "resume" and not resumable(sessions, at_least=SESSION_FRAMES // 2):
                kind = "session"
            file_format = "jpeg+fits" if round_no == 0 else rng.choice(["jpeg", "fits", "jpeg+fits"])
            exposure = round(rng.uniform(0.05, 0.2), 3)
            delay = round(rng.uniform(*KILL_DELAY), 3)
            status, payload = await server.post(
                "/api/camera/settings", {"exposure_seconds": exposure, "file_format": file_format}
            )
            assert status == 200, payload

            running = None  # the session that must be running when the kill comes
            if kind in ("session", "mixed"):
                body = {
                    "name": f"night{round_no}",
                    "total_images": SESSION_FRAMES,
                    "frame_type": rng.choice(["light", "dark"]),
                }
                status, payload = await server.post("/api/session/start", body)
                assert status == 200, payload
                running = payload["data"]["folder"]
            elif kind == "resume":
                name = rng.choice(resumable(sessions, at_least=SESSION_FRAMES // 2))
                status, payload = await server.post("/api/session/resume", {"name": name})
                assert status == 200, payload
                running = name
            mid_write = rng.random() < 0.5
            history.append(
                f"{round_no}:{kind}({running or '-'}, camera {file_format}, {exposure} s, "
                f"kill {'mid-write after' if mid_write else 'at'} {delay} s)"
            )

            loops = [gallery_loop(server, running)]
            if kind in ("captures", "mixed"):
                loops.append(capture_loop(server, record, (200,) if kind == "captures" else (409,)))
            watched = [root, root / running] if running else [root]
            await run_then_kill(server, delay, loops, watched if mid_write else None)

            left = check_after_kill(root, record)
            if running is not None:
                assert left.get(running) == "running", f"{running} was not running when killed: {left.get(running)}"
        assert resumes_checked >= 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nCRASH_SEED={SEED}, rounds: {history}\nserver log:\n{server.log_tail()}") from exc
    finally:
        await server.kill()
    print(
        f"\n{len(history)} kills: {history}; {len(record.verified)} files verified, "
        f"{len(record.confirmed)} confirmed by the API, {record.temporaries_seen} temporaries left by kills, "
        f"{resumes_checked} resumes checked"
    )


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "usb", "12m") as disk:
        yield disk


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_full_disk_then_a_kill_leave_no_partial_files(tmp_path, small_disk):
    rng = random.Random(SEED)
    root = small_disk / "captures"
    server = Server(tmp_path, root, env={"WANDA_MIN_FREE_MB": "0"})
    record = Record()
    try:
        await server.start()
        assert (await server.post("/api/camera/settings", {"exposure_seconds": 0.05, "file_format": "jpeg"}))[0] == 200
        status, payload = await server.post("/api/camera/capture", {})
        assert status == 200, payload
        record.confirmed.update([*payload["data"]["files"], payload["data"]["sidecar"]])

        # A session of JPEG + FITS frames (3.3 MB each) that fits runs into the end of the disk
        # mid-frame: someone else's file takes the room once its first frame is saved.
        settings = {"file_format": "jpeg+fits", "exposure_seconds": 3.0}  # time to fill the disk
        assert (await server.post("/api/camera/settings", settings))[0] == 200
        status, payload = await server.post("/api/session/start", {"name": "full", "total_images": 2})
        assert status == 200, payload

        async def first_frame_saved():
            return (await session_status(server))["captured_images"] >= 1

        await poll(first_frame_saved, what="the session's first frame")
        fill(small_disk, leave=2**20)
        ended = await wait_session_idle(server)
        assert ended["status"] == "error" and "disk is full" in ended["error"], ended
        assert ended["captured_images"] == 1
        assert (await server.post("/api/camera/settings", {"exposure_seconds": 0.05}))[0] == 200
        check_metadata(root / "full", read_metadata(root / "full"), exact=True)
        status, payload = await server.post("/api/camera/capture", {})
        assert (status, payload["code"]) == (507, "CAPTURE_FAILED"), payload

        # Not even a JPEG fits now.
        fill(small_disk, leave=64 * 1024)
        assert (await server.post("/api/camera/settings", {"file_format": "jpeg"}))[0] == 200
        status, payload = await server.post("/api/camera/capture", {})
        assert (status, payload["code"]) == (507, "CAPTURE_FAILED"), payload
        status, payload = await server.post("/api/session/start", {"name": "refused", "total_images": 5})
        assert (status, payload["code"]) == (409, "INSUFFICIENT_SPACE"), payload
        assert not (root / "refused").exists()
        check_files(root, record, scan(root))

        # Room for a JPEG but not its FITS: a session fails on its first frames while single
        # captures keep failing with 507, and the kill comes somewhere in that.
        (small_disk / "someone_elses_file.bin").unlink()
        assert (await server.post("/api/camera/settings", {"file_format": "jpeg+fits"}))[0] == 200
        # Two frames 2 s apart: it fits (the estimate knows a frame's size by now) until the disk
        # fills up, before its second frame at the latest however slow this machine is.
        timed = {"name": "full2", "total_images": 2, "total_time_hours": 4 / 3600}
        status, payload = await server.post("/api/session/start", timed)
        assert status == 200, payload
        fill(small_disk, leave=2 * 2**20)
        delay = round(rng.uniform(0.2, 1.0), 3)
        await run_then_kill(
            server, delay, [capture_loop(server, record, (200, 409, 507)), gallery_loop(server, "full2")]
        )
        left = check_after_kill(root, record)
        assert left["full"] == "error", left

        await server.start()
        sessions = await check_after_restart(server, record, left)
        assert sessions["full"]["status"] == "error"
        assert sessions["full2"]["status"] in ("error", "interrupted"), sessions["full2"]
        status, payload = await server.post("/api/session/resume", {"name": "full"})
        assert (status, payload["code"]) == (409, "INSUFFICIENT_SPACE"), payload
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nCRASH_SEED={SEED}\nserver log:\n{server.log_tail()}") from exc
    finally:
        await server.kill()


# -- a full disk in the middle of a save or at the end of a session -----------------------------------


def _image_names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in IMAGE_SUFFIXES)


async def test_a_capture_refused_for_a_full_disk_leaves_no_image(make_client, small_disk):
    root = small_disk / "captures"
    client = await make_client(captures=root, min_free_mb=0)
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.05, "file_format": "jpeg+fits"})
    assert response.status == 200
    fill(small_disk, leave=2**20)  # room for the JPEG (150 kB), not for the FITS (3 MB)
    response = await client.post("/api/camera/capture")
    assert response.status == 507 and (await response.json())["code"] == "CAPTURE_FAILED"
    assert _image_names(root) == []


async def test_a_session_ended_by_a_full_disk_is_not_listed_as_running(make_client, small_disk):
    root = small_disk / "captures"
    client = await make_client(captures=root, min_free_mb=0)
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.05, "file_format": "jpeg"})
    assert response.status == 200
    response = await client.post(
        "/api/session/start", json={"name": "filled", "total_images": 10, "total_time_hours": 4.0 / 3600}
    )
    assert response.status == 200  # a frame every 0.4 s

    async def first_frame_recorded():
        metadata = read_metadata(root / "filled")
        return metadata is not None and len(metadata["frames"]) >= 1

    async def ended():
        status = (await (await client.get("/api/session/status")).json())["data"]
        return status if not status["active"] else None

    await poll(first_frame_recorded, what="the first frame")
    fill(small_disk, leave=0)  # between two frames
    status = await poll(ended, what="the session to end")
    assert status["status"] == "error" and "disk is full" in status["error"], status
    listed = (await (await client.get("/api/sessions")).json())["data"]["sessions"]
    assert [(s["folder"], s["status"]) for s in listed] == [("filled", "error")]
