"""The state of the conversation a request belongs to, for the duration of
that request, and the mapping that replaces a bot's in-memory dict.

A legacy bot keeps ``conversation_states = {}`` and reads and writes
``conversation_states[user_id]``. With statehold in front of it, the same
code works across restarts and replicas once the dict is replaced::

    conversation_states = statehold.ConversationStates()

and the app is wrapped in one of the middlewares (ASGI, WSGI, aiohttp).
Inside a request the mapping holds exactly one entry: the conversation
statehold keyed the request with. Its value is a plain dict (or any JSON
value); changes to it, nested ones included, are reported to statehold when
the response leaves.
"""

import contextvars
import copy
import json
import threading
from typing import Any, Iterator, List, MutableMapping, Optional, Tuple

from . import deferred as _deferred
from .contract import HEADER_CLEAR, HEADER_DEFERRED, HEADER_STATE, Incoming, encode_state

_current: "contextvars.ContextVar[Optional[Conversation]]" = contextvars.ContextVar(
    "statehold_conversation", default=None
)


class NoConversation(LookupError):
    """Used outside a request that statehold keyed (no middleware, or a
    route without a key)."""


class Conversation:
    """One request's conversation: what statehold handed in, and what the
    bot makes of it."""

    def __init__(self, incoming: Incoming):
        self.incoming = incoming
        self._original = _canonical(incoming.state)
        self.state: Any = copy.deepcopy(incoming.state)
        self.cleared = False
        # The conversation's work: the request itself, and what it started
        # (tasks, background tasks, queued updates; see deferred.py).
        self._lock = threading.Lock()
        self._holds = 1
        # How the answer went: None (not yet), "inline" or "deferred".
        self.answered: Optional[str] = None
        self._answered_state: Optional[str] = None
        # The turn's report was made (inline or late): later changes are lost.
        self.settled = False

    @property
    def id(self) -> Optional[str]:
        return self.incoming.conversation_id

    def set(self, state: Any) -> None:
        self._check_settled()
        self.state = state
        self.cleared = state is None

    def clear(self) -> None:
        """The flow is over: statehold deletes the snapshot."""
        self._check_settled()
        self.state = None
        self.cleared = True

    def _check_settled(self) -> None:
        if self.settled:
            _deferred.warn_unreportable(self.incoming.key, "its turn was already reported")

    # ---------------------------------------------------------------- work

    def hold(self) -> bool:
        """One more piece of work on this conversation; ``False`` once its
        report was made (the work is then not waited for)."""
        with self._lock:
            if self.settled or self._holds <= 0:
                return False
            self._holds += 1
            return True

    def release(self) -> None:
        """A piece of work ended; the last one sends the late report."""
        with self._lock:
            self._holds -= 1
            last = self._holds == 0
        if last:
            self._work_done()

    def _answer(self) -> str:
        """Decides, once, when the response starts: report now ("inline"),
        or defer when the conversation's work goes on past the answer and
        statehold handed a turn token."""
        if self.answered is None:
            with self._lock:
                pending = self._holds > 1
            if pending and self.incoming.turn and self.incoming.key:
                self.answered = "deferred"
            else:
                self.answered = "inline"
                self._answered_state = self._now()
        return self.answered

    def _now(self) -> Optional[str]:
        return None if self.cleared else _canonical(self.state)

    def _work_done(self) -> None:
        if self.answered == "deferred":
            self.settled = True
            report = self.report()
            if report is None:
                body: dict = {"unchanged": True}
            elif report[0] == "clear":
                body = {"clear": True}
            else:
                body = {"state": report[1]}
            key = self.incoming.key

            def done(status: int) -> None:
                if status != 200:
                    why = f"its late report was refused ({status or 'no answer'})"
                    _deferred.warn_unreportable(key, why)

            _deferred.post_report(self.incoming.turn or "", body, done)
        elif self.answered == "inline":
            self.settled = True
            if self._now() != self._answered_state:
                why = ("the answer had no turn token to defer with" if not self.incoming.turn
                       else "nothing told the helper the work went on (see the guide)")
                _deferred.warn_unreportable(self.incoming.key, why)

    def report(self) -> Optional[Tuple[str, Any]]:
        """``("clear", None)``, ``("state", value)`` or ``None`` (unchanged)."""
        if self.cleared:
            return ("clear", None) if self.incoming.state is not None else None
        if self.state is None or _canonical(self.state) == self._original:
            return None
        return ("state", self.state)

    def report_headers(self) -> List[Tuple[str, str]]:
        """The response headers that report this conversation's state (or
        defer the report)."""
        if self._answer() == "deferred":
            return [(HEADER_DEFERRED, "1")]
        report = self.report()
        if report is None:
            return []
        kind, value = report
        if kind == "clear":
            return [(HEADER_CLEAR, "1")]
        return [(HEADER_STATE, encode_state(value))]

    def report_member(self) -> Optional[dict]:
        """Body mode: the member to put into the JSON response."""
        if self._answer() == "deferred":
            return {"deferred": True}
        report = self.report()
        if report is None:
            return None
        kind, value = report
        return {"clear": True} if kind == "clear" else {"state": value}


def _canonical(value: Any) -> Optional[str]:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def begin(incoming: Incoming) -> Tuple[Conversation, contextvars.Token]:
    """Makes ``incoming`` the current request's conversation."""
    conversation = Conversation(incoming)
    return conversation, _current.set(conversation)


def end(token: contextvars.Token) -> None:
    """The request is over (its conversation's other work may go on)."""
    conversation = _current.get()
    _current.reset(token)
    if conversation is not None:
        conversation.release()


def enter(conversation: Conversation) -> contextvars.Token:
    """Makes an existing conversation current (work that runs outside the
    request's own context: a framework's update queue)."""
    return _current.set(conversation)


def leave(token: contextvars.Token) -> None:
    _current.reset(token)


def current_or_none() -> Optional[Conversation]:
    """The current conversation, if a keyed request is being handled."""
    conversation = _current.get()
    if conversation is None or conversation.incoming.key is None:
        return None
    return conversation


def track_work() -> None:
    """Counts tasks and background tasks started during a request as its
    conversation's work (deferred.py); idempotent."""
    _deferred.track_tasks(current_or_none)
    _deferred.track_starlette(current_or_none)


def current() -> Conversation:
    """The current request's conversation."""
    conversation = _current.get()
    if conversation is None or conversation.incoming.key is None:
        raise NoConversation(
            "no statehold conversation in this request: wrap the app in a statehold "
            "middleware, and key the route in statehold's config"
        )
    return conversation


class ConversationStates(MutableMapping):
    """A drop-in for ``conversation_states = {}``.

    ``states[user_id]`` is the current request's state (``KeyError`` when
    there is none yet, as with a dict); ``states[user_id] = {...}`` sets it;
    ``del states[user_id]`` or ``states.pop(user_id)`` ends the flow.
    ``user_id`` must be the id statehold keyed the request with (the id
    part of ``X-Statehold-Key``): another conversation's state is not
    here, and asking for it raises ``KeyError``, never returns the wrong
    one. Pass ``check_ids=False`` when the bot's ids differ from the route's
    key (for instance a user id where the route keys by chat).
    """

    def __init__(self, check_ids: bool = True):
        self._check_ids = check_ids

    def _conversation(self, user_id: Any) -> Conversation:
        conversation = current()
        if self._check_ids and str(user_id) != conversation.id:
            raise KeyError(user_id)
        return conversation

    def __getitem__(self, user_id: Any) -> Any:
        conversation = self._conversation(user_id)
        if conversation.state is None:
            raise KeyError(user_id)
        return conversation.state

    def __setitem__(self, user_id: Any, state: Any) -> None:
        try:
            conversation = self._conversation(user_id)
        except KeyError:
            raise ValueError(
                f"{user_id!r} is not this request's conversation "
                f"({current().incoming.key}); statehold keeps one conversation per request"
            ) from None
        conversation.set(state)

    def __delitem__(self, user_id: Any) -> None:
        conversation = self._conversation(user_id)
        if conversation.state is None:
            raise KeyError(user_id)
        conversation.clear()

    def __iter__(self) -> Iterator[str]:
        conversation = _current.get()
        if conversation is not None and conversation.state is not None and conversation.id:
            yield conversation.id

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, user_id: object) -> bool:
        try:
            self[user_id]
        except (KeyError, NoConversation):
            return False
        return True
