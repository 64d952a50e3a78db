"""python-telegram-bot (v21 and later) behind statehold.

PTB answers its webhook before the update is handled: the webhook handler
puts the update on ``application.update_queue`` and returns, and PTB's own
task handles it later (``block=False`` handlers later still). ``track``
makes each queued update part of the work of the request that queued it,
so the ASGI middleware defers the report and the late report follows once
the update and its non-blocking handlers are done::

    application = Application.builder().token(TOKEN).updater(None).build()
    statehold.ptb.track(application)

    async def telegram(request):          # the custom webhook (Starlette)
        await application.update_queue.put(Update.de_json(await request.json(), application.bot))
        return Response()

Handlers read and write ``conversation_states[chat_id]`` as before.
``concurrent_updates`` is kept (the processor in place is wrapped).
"""

from typing import Any, Awaitable, Dict

from . import state as _state


def track(application: Any) -> Any:
    """Tracks the updates ``application`` takes from its queue; returns it."""
    from telegram.ext import BaseUpdateProcessor

    owners: Dict[int, _state.Conversation] = {}
    queue = application.update_queue
    put, put_nowait = queue.put, queue.put_nowait

    def remember(update: Any) -> None:
        # asyncio.Queue.put calls put_nowait: remembered once.
        conversation = _state.current_or_none()
        if id(update) not in owners and conversation is not None and conversation.hold():
            owners[id(update)] = conversation

    async def tracked_put(update: Any) -> None:
        remember(update)
        await put(update)

    def tracked_put_nowait(update: Any) -> None:
        remember(update)
        put_nowait(update)

    queue.put, queue.put_nowait = tracked_put, tracked_put_nowait

    class Tracking(BaseUpdateProcessor):
        """The application's processor, run inside the conversation of the
        request that queued each update."""

        def __init__(self, inner: Any):
            super().__init__(inner.max_concurrent_updates)
            self.inner = inner

        async def do_process_update(self, update: Any, coroutine: "Awaitable[Any]") -> None:
            conversation = owners.pop(id(update), None)
            if conversation is None:
                await self.inner.do_process_update(update, coroutine)
                return
            _state.track_work()
            token = _state.enter(conversation)
            try:
                await self.inner.do_process_update(update, coroutine)
            finally:
                _state.leave(token)
                conversation.release()

        async def initialize(self) -> None:
            await self.inner.initialize()

        async def shutdown(self) -> None:
            await self.inner.shutdown()

    if not hasattr(application, "_update_processor"):
        raise RuntimeError("statehold.ptb.track: this python-telegram-bot version is not supported")
    application._update_processor = Tracking(application._update_processor)
    return application
