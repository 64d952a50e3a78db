"""Answer first, work later: deferred turns (docs/frameworks.md#answer-first-work-later).

Many bots answer the webhook before their handlers have produced the new
state: aiogram's ``handle_in_background=True`` (its default), Starlette and
FastAPI ``BackgroundTasks``, python-telegram-bot's update queue, handlers
that call an LLM for half a minute. The helpers see it coming: work that
belongs to the request's conversation and is still running when the
response starts. Then, instead of reporting, the response says
``X-Statehold-Deferred: 1`` (statehold keeps the conversation's turn), and
once the last piece of that work ends, the helper posts the late report
to statehold's ``POST /v1/turns/<token>``.

What counts as the conversation's work: the request itself; asyncio tasks
created while handling it (and their tasks, recursively: a task factory
installed on the running loop); Starlette ``BackgroundTask`` objects made
during it; python-telegram-bot updates queued during it
(``statehold.ptb.track``).

Where the report goes: ``STATEHOLD_REPORT_URL`` (default
``http://127.0.0.1:9090``, statehold's admin listener in the shipped
config), or ``statehold.deferred.configure(report_url=...)``.

A state change that can no longer be reported (the answer left without a
deferral, the late report was refused or already sent) is never silent:
it is logged as an error naming the guide, once per conversation.
"""

import asyncio
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

log = logging.getLogger("statehold")

GUIDE = "docs/frameworks.md#answer-first-work-later"
REPORT_URL_ENV = "STATEHOLD_REPORT_URL"
DEFAULT_REPORT_URL = "http://127.0.0.1:9090"

_settings = {"report_url": None}
_warned = set()
_warned_lock = threading.Lock()


def configure(report_url: Optional[str] = None) -> None:
    """Where late reports go (statehold's admin listener)."""
    _settings["report_url"] = report_url


def report_url() -> str:
    url = _settings["report_url"] or os.environ.get(REPORT_URL_ENV) or DEFAULT_REPORT_URL
    return url.rstrip("/")


def warn_unreportable(key: Optional[str], why: str) -> None:
    """The error a lost state change gets, once per conversation."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.error("statehold: the state of %s changed after the answer left and %s: this change is "
              "lost. Answer first and report later: see %s", key, why, GUIDE)


def post_report(token: str, body: dict, done: Callable[[int], None]) -> None:
    """POSTs a late report off the caller's thread; ``done(status)`` after
    (0: statehold did not answer)."""

    def run() -> None:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(f"{report_url()}/v1/turns/{token}", data=data, method="POST",
                                     headers={"content-type": "application/json"})
        status = 0
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        done(status)

    threading.Thread(target=run, name="statehold-late-report", daemon=True).start()


# ------------------------------------------------------------ asyncio tasks

def track_tasks(current: Callable[[], Any]) -> None:
    """Counts asyncio tasks created while a conversation is current as its
    work (installed once per running loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if getattr(loop, "_statehold_tracked", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> "asyncio.Task":
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        conversation = current()
        if conversation is not None and conversation.hold():
            task.add_done_callback(lambda _t: conversation.release())
        return task

    loop.set_task_factory(factory)
    loop._statehold_tracked = True  # type: ignore[attr-defined]


def track_starlette(current: Callable[[], Any]) -> None:
    """Counts Starlette (and FastAPI) background tasks made during a request
    as its conversation's work."""
    try:
        from starlette import background
    except ImportError:
        return
    cls = background.BackgroundTask
    if getattr(cls, "_statehold_tracked", False):
        return
    original_init, original_call = cls.__init__, cls.__call__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        conversation = current()
        self._statehold = conversation if conversation is not None and conversation.hold() else None

    async def __call__(self: Any) -> None:
        try:
            await original_call(self)
        finally:
            conversation, self._statehold = getattr(self, "_statehold", None), None
            if conversation is not None:
                conversation.release()

    cls.__init__, cls.__call__ = __init__, __call__
    cls._statehold_tracked = True
