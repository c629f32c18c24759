"""The OpenAPI 3 description of WANDA's HTTP API, served at ``GET /api/openapi.json``.

Written by hand next to the handlers: it says what the validation in wanda/settings.py,
wanda/sessions/checks.py and the handlers accepts. tests/test_openapi.py checks that every route the app
registers is described here and nothing else, and the fuzzing tests hold the server to it.
"""

from __future__ import annotations

from typing import Any

from wanda import __version__
from wanda.errors import ErrorCode
from wanda.handlers.captures import MAX_OFFSET, MAX_PAGE, MAX_SELECTION, PAGE
from wanda.handlers.polar_api import HAND_TURN_DEG, KNOB_TURN_ARCMIN, MAX_HAND_TURN_S
from wanda.polar_align import HAND_WAIT_RANGE_S, LIMIT_RANGE_ARCMIN, ROTATION_RANGE_DEG
from wanda.sessions.checks import MAX_DITHER_STEPS, MAX_IMAGES, MAX_SETTLE_S
from wanda.settings import FILE_FORMATS, FRAME_TYPES, MAX_SKIP_FRAMES, NIGHT_VISION_LIMITS, Limits

ERROR_CODES = [str(code) for code in ErrorCode]  # each with its status in wanda.handlers.envelope.STATUS

STATUS_TEXT = {
    400: "bad input",
    401: "no or wrong password",
    403: "a web page of another site, or no permission on the disk",
    404: "no such thing",
    405: "wrong method",
    408: "the body did not arrive in time",
    409: "conflict with what runs",
    413: "body too large",
    415: "not a JPEG or FITS image",
    422: "understood, but it could not be done (the message and data say why)",
    429: "too many failed logins",
    500: "a fault in WANDA or the camera",
    503: "not available now (or every connection busy)",
    507: "the disk is full or read-only",
}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": STATUS_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "whole seconds until the next try",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _ok(description: str = "OK", data: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Envelope"}
    if data is not None:
        schema = {"allOf": [schema, {"type": "object", "properties": {"data": data}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, responses: dict[int | str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    # Every operation may meet these: an unknown field or a bad body (400, the JSON ones, and 408
    # for a body too slow), the password (401, and 429 after too many wrong ones from the
    # address), a server fault (500), every connection busy (503).
    all_responses = {str(code): value for code, value in responses.items()}
    body_errors = (400, 408, 413) if "requestBody" in extra else ()
    for status in (401, 429, 500, 503, *body_errors, *errors):
        all_responses.setdefault(str(status), _error(status))
    return {"summary": summary, "responses": all_responses, **extra}


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _number(low: float, high: float) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high}


def _camera_settings(limits: Limits) -> dict[str, Any]:
    low, high = limits.exposure
    gain_low, gain_high = limits.gain
    return _object(
        {
            "exposure_seconds": {"type": "number", "exclusiveMinimum": 0, "minimum": low, "maximum": high},
            "iso": {"type": "number", "minimum": gain_low * 100, "maximum": gain_high * 100},
            "gain": {"type": "number", "minimum": gain_low, "maximum": gain_high},
            "night_vision_mode": {"type": "boolean"},
            "night_vision_intensity": {
                "type": "number",
                "minimum": NIGHT_VISION_LIMITS[0],
                "maximum": NIGHT_VISION_LIMITS[1],
            },
            "save_raw": {"type": "boolean"},
            "skip_frames": {"type": "integer", "minimum": 0, "maximum": MAX_SKIP_FRAMES},
            "file_format": {"type": "string", "enum": list(FILE_FORMATS)},
            "frame_type": {"type": "string", "enum": list(FRAME_TYPES)},
        }
    )


def build_spec(limits: Limits) -> dict[str, Any]:
    """The description, with the exposure and gain ranges of the camera in use."""
    name = {"type": "string", "minLength": 1, "maxLength": 64}
    session_start = _object(
        {
            "name": name,
            "total_images": {"type": "integer", "minimum": 1, "maximum": 100000},
            "total_time_hours": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 240},
            "enable_tracking": {"type": "boolean"},
            "use_current_settings": {"type": "boolean"},
            "exposure_seconds": {"type": "number", "minimum": limits.exposure[0], "maximum": limits.exposure[1]},
            "iso": {"type": "number", "minimum": limits.gain[0] * 100, "maximum": limits.gain[1] * 100},
            "gain": {"type": "number", "minimum": limits.gain[0], "maximum": limits.gain[1]},
            "frame_type": {"type": "string", "enum": list(FRAME_TYPES)},
            "file_format": {"type": "string", "enum": list(FILE_FORMATS)},
            "object": {"type": "string", "minLength": 1, "maxLength": 68},
            "dither": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "every": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES},
                            "max_steps": {"type": "integer", "minimum": 1, "maximum": MAX_DITHER_STEPS},
                            "settle_s": {"type": "number", "minimum": 0, "maximum": MAX_SETTLE_S},
                        },
                        ["every", "max_steps"],
                    ),
                ]
            },
        },
        ["name", "total_images"],
    )
    session_form = _object(
        {
            "name": {"type": "string", "maxLength": 64},
            "totalImages": {"type": "integer", "minimum": 1, "maximum": 100000},
            "enableTracking": {"type": "boolean"},
            "useCurrentSettings": {"type": "boolean"},
            "sessionMode": {"type": "string", "enum": ["rapid", "timed"]},
            "totalTimeHours": {"type": "number", "exclusiveMinimum": 0, "maximum": 240},
            "ditherEvery": {"type": "integer", "minimum": 0, "maximum": MAX_IMAGES},
            "ditherSteps": {"type": "integer", "minimum": 1, "maximum": MAX_DITHER_STEPS},
        }
    )
    tracking = _object(
        {
            "action": {"type": "string", "enum": ["start", "stop"]},
            "speed": {"type": "number", "description": "seconds per half step; clamped to 0.1..10"},
            "direction": {
                "oneOf": [
                    {"type": "boolean"},
                    {"type": "string", "enum": ["cw", "ccw", "clockwise", "counterclockwise"]},
                ]
            },
        },
        ["action"],
    )
    centre = _object(
        {
            "target": {"type": "string", "minLength": 1, "maxLength": 64, "description": "a name: M31, NGC 7000"},
            "ra": {"type": "number", "minimum": 0, "maximum": 360, "description": "J2000 degrees (with dec)"},
            "dec": {"type": "number", "minimum": -90, "maximum": 90},
            "tolerance_arcmin": {"type": "number", "minimum": 0.1, "maximum": 600, "default": 2},
            "rounds": {"type": "integer", "minimum": 1, "maximum": 20, "default": 6},
            "max_move_deg": {"type": "number", "minimum": 0.1, "maximum": 180, "default": 30},
        }
    )
    folder_query = {"name": "folder", "in": "query", "required": False, "schema": {"type": "string"}}
    capture_path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    jpeg = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}
    selection = _object(
        {
            "paths": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SELECTION,
                "items": {"type": "string", "minLength": 1},
                "description": "captures' paths as listed (`path`), e.g. `M42/light_0001.fits`",
            }
        },
        ["paths"],
    )
    selection_body = {
        "required": True,
        "content": {
            "application/json": {"schema": selection},
            "application/x-www-form-urlencoded": {"schema": selection},
        },
    }
    zip_response = {
        "description": "the zip",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
    flag = {"type": "string", "enum": ["1", "true", "0"]}
    mjpeg = {
        "description": "multipart/x-mixed-replace; boundary=frame: one JPEG a part, until the client leaves",
        "content": {"multipart/x-mixed-replace": {"schema": {"type": "string", "format": "binary"}}},
    }
    stream_params = [
        {"name": "fps", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 60}},
        {"name": "stretch", "in": "query", "schema": {"type": "string", "enum": ["auto", "none"]}},
        {"name": "source", "in": "query", "schema": {"type": "string", "enum": ["live", "stack"]}},
    ]
    paths: dict[str, Any] = {
        "/": {
            "get": _operation("the browser client", {200: {"description": "the page", "content": {"text/html": {}}}})
        },
        "/static/{filename}": {
            "get": _operation(
                "the browser client's files",
                {200: {"description": "the file"}},
                404,
                parameters=[{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/login": {
            "get": _operation(
                "the login page (when a password is set)",
                {200: {"description": "the page", "content": {"text/html": {}}}},
            ),
            "post": _operation(
                "log in: sets the session cookie",
                {200: _ok("logged in")},
                requestBody=_json_body(_object({"password": {"type": "string", "maxLength": 1024}}, ["password"])),
            ),
        },
        "/stream": {"get": _operation("live MJPEG stream", {200: mjpeg}, 400, 503, parameters=stream_params)},
        "/video_feed": {
            "get": _operation("live MJPEG stream (the original path)", {200: mjpeg}, 400, 503, parameters=stream_params)
        },
        "/snapshot": {"get": _operation("one fresh JPEG", {200: {"description": "the frame", **jpeg}}, 503)},
        "/state": {"get": _operation("the stream's state: rates, viewers, analysis", {200: _ok()})},
        "/ws": {
            "get": _operation(
                "the WebSocket (events and commands, see docs/api.md); a plain GET is refused",
                {101: {"description": "switching to the WebSocket protocol"}},
                400,
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "this description", {200: {"description": "OpenAPI 3", "content": {"application/json": {}}}}
            )
        },
        "/api/health": {"get": _operation("event-loop lag, uptime, viewers, the camera", {200: _ok()})},
        "/api/camera/status": {"get": _operation("camera settings, limits and state", {200: _ok()})},
        "/api/camera/settings": {
            "post": _operation(
                "change camera settings (the applied values come back)",
                {200: _ok("settings applied")},
                400,
                403,
                409,
                503,
                requestBody=_json_body(_camera_settings(limits)),
            )
        },
        "/api/camera/capture": {
            "post": _operation(
                "take one still with the current settings; answers when it is saved",
                {200: _ok("saved")},
                400,
                403,
                409,
                503,
                507,
                requestBody=_json_body(_object({}), required=False),
            )
        },
        "/api/camera/capture/cancel": {
            "post": _operation(
                "abort the running exposure",
                {200: _ok()},
                400,
                403,
                requestBody=_json_body(_object({}), required=False),
            )
        },
        "/api/analysis": {
            "get": _operation("histogram, stretch, stars and focus of the live image", {200: _ok()}, 503)
        },
        "/api/mount/status": {"get": _operation("tracking state and step timing", {200: _ok()})},
        "/api/mount/tracking": {
            "post": _operation("start or stop tracking", {200: _ok()}, 400, 403, 503, requestBody=_json_body(tracking))
        },
        "/api/mount/center": {
            "post": _operation(
                "centre a target in RA: solve, step the RA axis, repeat; answers when it ends (Dec by hand)",
                {200: _ok()},
                400,
                403,
                404,
                409,
                422,
                503,
                requestBody=_json_body(centre),
            ),
            "get": _operation("the running or last centring", {200: _ok()}),
            "delete": _operation("stop a running centring", {200: _ok()}, 403),
        },
        "/api/polar-align": {
            "post": _operation(
                "start the polar alignment assistant (answers at once; the topic polar_align follows it), or cancel it",
                {200: _ok()},
                400,
                403,
                409,
                requestBody=_json_body(
                    _object(
                        {
                            "action": {"type": "string", "enum": ["start", "cancel"]},
                            "rotate_deg": _number(*ROTATION_RANGE_DEG),
                            "direction": {"type": "string", "enum": ["west", "east"]},
                            "mode": {"type": "string", "enum": ["stepper", "hand"]},
                            "limit_arcmin": _number(*LIMIT_RANGE_ARCMIN),
                            "hand_wait_s": _number(*HAND_WAIT_RANGE_S),
                        },
                        ["action"],
                    )
                ),
            ),
            "get": _operation(
                "the running or last polar alignment: its step, the error and the knobs' directions", {200: _ok()}
            ),
        },
        "/api/sim/mount": {
            "get": _operation(
                "the simulated mount's axis against the pole (the simulated sky at a site only)", {200: _ok()}, 404
            ),
            "post": _operation(
                "play the observer at the simulated mount: turn its knobs, turn the RA axis by hand, lock or release the clutch",
                {200: _ok()},
                400,
                403,
                404,
                requestBody=_json_body(
                    _object(
                        {
                            "alt_knob_arcmin": _number(-KNOB_TURN_ARCMIN, KNOB_TURN_ARCMIN),
                            "az_knob_arcmin": _number(-KNOB_TURN_ARCMIN, KNOB_TURN_ARCMIN),
                            "ra_by_hand_deg": _number(-HAND_TURN_DEG, HAND_TURN_DEG),
                            "seconds": _number(0, MAX_HAND_TURN_S),
                            "clutch": {"type": "string", "enum": ["locked", "released"]},
                        }
                    )
                ),
            ),
        },
        "/api/calibration": {
            "get": _operation("the master darks, flats and bias frames", {200: _ok()}),
            "post": _operation(
                "build a master from a session of darks, flats or bias frames (FITS); answers when built",
                {200: _ok()},
                400,
                403,
                404,
                503,
                requestBody=_json_body(
                    _object(
                        {
                            "session": {"type": "string", "minLength": 1},
                            "method": {"type": "string", "enum": ["median", "sigma_clip"]},
                        },
                        ["session"],
                    )
                ),
            ),
        },
        "/api/calibration/{name}": {
            "delete": _operation(
                "delete a master",
                {200: _ok()},
                403,
                404,
                parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/api/stack": {"get": _operation("the live stack's state: frames stacked and rejected, noise", {200: _ok()})},
        "/api/stack/start": {
            "post": _operation(
                "start stacking the live view, or a session's frames (the running one's, or the named folder's)",
                {200: _ok()},
                400,
                403,
                404,
                requestBody=_json_body(
                    _object(
                        {
                            "source": {"type": "string", "enum": ["preview", "session"]},
                            "session": {"type": "string", "description": "a session's folder (source session)"},
                        }
                    ),
                    required=False,
                ),
            )
        },
        "/api/stack/stop": {
            "post": _operation(
                "stop stacking (the stack stays)",
                {200: _ok()},
                403,
                requestBody=_json_body(_object({}), required=False),
            )
        },
        "/api/stack/save": {
            "post": _operation(
                "save the stack: a 32-bit float FITS and a stretched JPEG in the gallery's stacks folder",
                {200: _ok()},
                403,
                404,
                507,
                requestBody=_json_body(_object({}), required=False),
            )
        },
        "/api/stack/reset": {
            "post": _operation(
                "clear the stack", {200: _ok()}, 403, requestBody=_json_body(_object({}), required=False)
            )
        },
        "/api/session/status": {"get": _operation("the running or last session", {200: _ok()})},
        "/api/session/start": {
            "post": _operation(
                "start a capture session", {200: _ok()}, 400, 403, 409, 507, requestBody=_json_body(session_start)
            )
        },
        "/api/session/stop": {
            "post": _operation(
                "stop the running session",
                {200: _ok()},
                400,
                403,
                409,
                requestBody=_json_body(_object({}), required=False),
            )
        },
        "/api/session/resume": {
            "post": _operation(
                "resume an interrupted, stopped or failed session",
                {200: _ok()},
                400,
                403,
                409,
                507,
                requestBody=_json_body(_object({"name": name}), required=False),
            )
        },
        "/api/sessions": {"get": _operation("every session, newest first", {200: _ok()})},
        "/api/session/config": {
            "get": _operation("the remembered session form", {200: _ok()}),
            "post": _operation(
                "remember the session form", {200: _ok()}, 400, 403, 507, requestBody=_json_body(session_form)
            ),
        },
        "/api/storage": {"get": _operation("where captures go, free space, frames left", {200: _ok()})},
        "/api/objects": {
            "get": _operation(
                "a deep-sky object by name (OpenNGC) with its altitude now, or (in_view=1) the objects in the solved frame",
                {200: _ok()},
                400,
                404,
                parameters=[
                    {"name": "q", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
                    {"name": "in_view", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]}},
                ],
            )
        },
        "/api/solve": {
            "get": _operation("the latest plate solution or failure (solved null before the first)", {200: _ok()}),
            "post": _operation(
                "plate-solve the live view, or a saved capture by path; or switch continuous solving",
                {200: _ok()},
                400,
                403,
                404,
                415,
                422,
                requestBody=_json_body(
                    _object({"path": {"type": "string", "minLength": 1}, "continuous": {"type": "boolean"}}),
                    required=False,
                ),
            ),
        },
        "/api/site": {
            "get": _operation("where the telescope stands", {200: _ok()}),
            "post": _operation(
                "set the site (typed, or the observer's device's location); kept across restarts",
                {200: _ok()},
                400,
                403,
                requestBody=_json_body(
                    _object(
                        {
                            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                            "longitude": {"type": "number", "minimum": -180, "maximum": 360},
                            "source": {"type": "string", "enum": ["device", "typed"]},
                        },
                        ["latitude", "longitude"],
                    )
                ),
            ),
        },
        "/api/clock": {
            "get": _operation("the Pi's time and whether NTP keeps it", {200: _ok()}),
            "post": _operation(
                "set the Pi's clock from the observer's device (not when NTP keeps it)",
                {200: _ok()},
                400,
                403,
                409,
                requestBody=_json_body(
                    _object(
                        {"unix_time": {"type": "number", "minimum": 1_767_225_600, "maximum": 4_102_444_800}},
                        ["unix_time"],
                    )
                ),
            ),
        },
        "/api/captures": {
            "get": _operation(
                "every image's name, newest first, and the details of one page of frames",
                {200: _ok()},
                400,
                404,
                parameters=[
                    folder_query,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": PAGE},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                    },
                ],
            )
        },
        "/api/captures/folders": {"get": _operation("folders of the capture directory", {200: _ok()})},
        "/api/captures/delete": {
            "post": _operation(
                "delete several captures (with their frames' sidecars): all of them, or none if one is refused",
                {200: _ok()},
                400,
                403,
                404,
                409,
                507,
                requestBody=selection_body,
            )
        },
        "/api/captures/zip": {
            "post": _operation(
                "several captures and their sidecars as a zip, streamed",
                {200: zip_response},
                400,
                403,
                404,
                503,
                requestBody=selection_body,
            )
        },
        "/api/captures/{folder}.zip": {
            "get": _operation(
                "a folder as a zip, streamed",
                {200: zip_response},
                400,
                404,
                503,
                parameters=[
                    {"name": "folder", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                ],
            )
        },
        "/api/captures/{path}": {
            "get": _operation(
                "a capture; or its frame's details (info), its thumbnail (thumb), a JPEG to view it (preview)",
                {200: {"description": "the file, the JPEG asked for, or (info) the envelope with the frame's details"}},
                400,
                403,
                404,
                415,
                parameters=[
                    capture_path,
                    {"name": "info", "in": "query", "schema": flag},
                    {"name": "thumb", "in": "query", "schema": flag},
                    {"name": "preview", "in": "query", "schema": flag},
                    {"name": "stretch", "in": "query", "schema": {"type": "string", "enum": ["auto", "none"]}},
                ],
            ),
            "delete": _operation(
                "delete a capture or a folder", {200: _ok()}, 400, 403, 404, 409, 507, parameters=[capture_path]
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WANDA",
            "version": __version__,
            "description": "Telescope controller: camera, mount, sessions, captures. Every JSON answer is the "
            "envelope {success, data, message} or {success: false, code, error}. See docs/api.md.",
        },
        "components": {
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "required": ["success", "data", "message"],
                    "properties": {"success": {"const": True}, "data": {}, "message": {"type": "string"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["success", "code", "error"],
                    "properties": {
                        "success": {"const": False},
                        "code": {"type": "string", "enum": ERROR_CODES},
                        "error": {"type": "string"},
                    },
                },
            },
            "securitySchemes": {
                "password": {"type": "http", "scheme": "bearer", "description": "the --password, when one is set"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "wanda_session"},
            },
        },
        "security": [{}, {"password": []}, {"cookie": []}],
        "paths": paths,
    }
