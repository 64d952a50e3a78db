"""The wire contract between statehold and a bot (docs/contract.md, section 3).

statehold sends the conversation's snapshot as base64url of its JSON text,
*without padding*: Python's ``base64.urlsafe_b64decode`` refuses that
("Incorrect padding"), so decode it here, never by hand.
"""

import base64
import json
from typing import Any, Mapping, Optional

HEADER_KEY = "X-Statehold-Key"
HEADER_VERSION = "X-Statehold-Version"
HEADER_STATE = "X-Statehold-State"
HEADER_STATUS = "X-Statehold-Status"
HEADER_CLEAR = "X-Statehold-Clear"
HEADER_VERIFIED = "X-Statehold-Verified"
#: The turn's token (request): the credential of a late report.
HEADER_TURN = "X-Statehold-Turn"
#: The bot answered first and reports later (response).
HEADER_DEFERRED = "X-Statehold-Deferred"

#: Header mode, request: ``body`` when the snapshot was too large for a
#: header (``contract.max_header_bytes``) and travels in the JSON body's
#: member, as in body mode. Only statehold can set it (reserved prefix).
HEADER_STATE_IN = "X-Statehold-State-In"

#: Body mode's member (``contract.body_field = "/_statehold"``).
BODY_FIELD = "_statehold"


class ContractError(ValueError):
    """A snapshot that is not what the contract says."""


def decode_state(value: Optional[str]) -> Any:
    """The snapshot carried by an ``X-Statehold-State`` value.

    Accepts what statehold sends (base64url, no padding) and, for symmetry
    with what a bot may send, padded base64url and raw JSON objects.
    ``None`` or an empty value means no snapshot.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.startswith("{"):
        return _loads(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        text = raw.decode("utf-8")
    except (ValueError, TypeError) as e:
        raise ContractError("X-Statehold-State is not base64url of UTF-8 JSON") from e
    return _loads(text)


def encode_state(state: Any) -> str:
    """An ``X-Statehold-State`` value for ``state`` (any JSON value).

    Always base64url without padding: header-safe whatever the state holds
    (non-ASCII text, newlines), which raw JSON is not.
    """
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def take_member(body: bytes, field: str = BODY_FIELD) -> "tuple[Any, bytes]":
    """Body mode: statehold's member out of a JSON object body, as
    ``(member, the body without it)``; any other body comes back as it is,
    with ``None``."""
    parsed = _object(body)
    if parsed is None or field not in parsed:
        return None, body
    member = parsed.pop(field)
    return member, _dumps(parsed)


def put_member(body: bytes, member: Any, field: str = BODY_FIELD) -> Optional[bytes]:
    """Body mode: the JSON object ``body`` with the member set, or ``None``
    when the body is not a JSON object (report in headers then)."""
    parsed = _object(body)
    if parsed is None:
        return None
    parsed[field] = member
    return _dumps(parsed)


def _object(body: bytes) -> Optional[dict]:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise ContractError("the snapshot is not JSON") from e


class Incoming:
    """What statehold told the bot about this request's conversation."""

    __slots__ = ("key", "version", "status", "state", "verified", "turn", "state_in_body")

    def __init__(self, key: Optional[str], version: int, status: Optional[str], state: Any,
                 verified: Optional[str] = None, turn: Optional[str] = None,
                 state_in_body: bool = False):
        self.key = key
        self.version = version
        self.status = status
        self.state = state
        self.verified = verified
        self.turn = turn
        #: Header mode: the snapshot is in the body's member (read it with
        #: ``take_member`` and ``with_body_member``, as in body mode).
        self.state_in_body = state_in_body

    @property
    def conversation_id(self) -> Optional[str]:
        """The id part of ``<namespace>:<id>``."""
        if self.key is None or ":" not in self.key:
            return None
        return self.key.split(":", 1)[1]

    @classmethod
    def from_headers(cls, get: "Mapping[str, str] | Any") -> "Incoming":
        """From a case-insensitive header lookup ``get(name) -> str | None``."""
        lookup = get.get if hasattr(get, "get") else get
        version = lookup(HEADER_VERSION)
        try:
            version_number = int(version) if version else 0
        except ValueError:
            version_number = 0
        return cls(
            key=lookup(HEADER_KEY),
            version=version_number,
            status=lookup(HEADER_STATUS),
            state=decode_state(lookup(HEADER_STATE)),
            verified=lookup(HEADER_VERIFIED),
            turn=lookup(HEADER_TURN),
            state_in_body=(lookup(HEADER_STATE_IN) or "").strip().lower() == "body",
        )

    def with_body_member(self, member: Any) -> "Incoming":
        """Body mode: the member statehold put into the JSON request body."""
        if not isinstance(member, dict):
            return self
        return Incoming(
            key=member.get("key", self.key),
            version=int(member.get("version", self.version) or 0),
            status=member.get("status", self.status),
            state=member.get("state", self.state),
            verified=self.verified,
            turn=member.get("turn", self.turn),
        )
