"""The one owner of the camera's stills: who may expose now.

Manual captures, sessions and Alpaca exposures all want the sensor for stills. Each of them
acquires the camera here before it exposes and releases it on every path; a second user is refused
at once with ``409 CAPTURE_BUSY`` naming the holder. The check and the take are one synchronous
step in the event loop, with no ``await`` between them, so two requests arriving together cannot
both pass the check: the race is impossible by construction, not by timing. The preview is not an
owner: it runs between stills on the camera thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from wanda.errors import ErrorCode, WandaError


@dataclass(frozen=True)
class Holder:
    """Who holds the camera: a kind ("capture", "session", ...) and, where it has one, a name."""

    kind: str
    name: str | None = None

    def describe(self) -> str:
        if self.name:
            return f"{self.kind} {self.name!r}"
        return f"{'an' if self.kind[:1].lower() in 'aeiou' else 'a'} {self.kind}"

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "name": self.name}


class Lease:
    """The camera held by one user until ``release`` (or the end of a ``with`` block)."""

    def __init__(self, arbiter: CameraArbiter, holder: Holder):
        self._arbiter = arbiter
        self.holder = holder

    @property
    def held(self) -> bool:
        return self._arbiter.lease is self

    def release(self) -> None:
        """Give the camera back; harmless when already released."""
        if self.held:
            self._arbiter.lease = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class CameraArbiter:
    """Hands the camera to one user at a time. Lives in the event loop; never awaits."""

    def __init__(self) -> None:
        self.lease: Lease | None = None

    @property
    def holder(self) -> Holder | None:
        return self.lease.holder if self.lease is not None else None

    def acquire(self, kind: str, name: str | None = None) -> Lease:
        """Take the camera, or raise 409 CAPTURE_BUSY naming who has it."""
        if self.lease is not None:
            holder = self.lease.holder
            raise WandaError(
                ErrorCode.CAPTURE_BUSY,
                f"the camera is busy: {holder.describe()} is using it",
                {"held_by": holder.as_dict()},
            )
        self.lease = Lease(self, Holder(kind, name))
        return self.lease
