"""statehold client helpers: read and report a conversation's state behind
statehold, in five lines. Pure standard library, Python 3.9 or newer.

    import statehold
    conversation_states = statehold.ConversationStates()   # was: {}
    app.add_middleware(statehold.asgi.StateholdMiddleware)  # FastAPI

See clients/python/README.md and docs/frameworks.md.
"""

from . import asgi, deferred, wsgi
from .contract import (
    BODY_FIELD,
    HEADER_CLEAR,
    HEADER_DEFERRED,
    HEADER_KEY,
    HEADER_STATE,
    HEADER_STATUS,
    HEADER_STATE_IN,
    HEADER_TURN,
    HEADER_VERIFIED,
    HEADER_VERSION,
    ContractError,
    Incoming,
    decode_state,
    encode_state,
)
from .state import Conversation, ConversationStates, NoConversation, current

__all__ = [
    "asgi",
    "deferred",
    "wsgi",
    "BODY_FIELD",
    "HEADER_CLEAR",
    "HEADER_DEFERRED",
    "HEADER_KEY",
    "HEADER_STATE",
    "HEADER_STATUS",
    "HEADER_STATE_IN",
    "HEADER_TURN",
    "HEADER_VERIFIED",
    "HEADER_VERSION",
    "ContractError",
    "Conversation",
    "ConversationStates",
    "Incoming",
    "NoConversation",
    "current",
    "decode_state",
    "encode_state",
]
__version__ = "0.1.0"
