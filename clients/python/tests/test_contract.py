"""The contract helpers and the mapping, without a server."""

import base64
import json

import pytest

import statehold
from statehold import state as st


def test_decodes_what_statehold_sends_unpadded_base64url():
    snapshot = {"step": "email", "name": "Zoë", "n": [1, 2.5, None]}
    text = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False).encode()
    unpadded = base64.urlsafe_b64encode(text).decode().rstrip("=")
    assert len(text) % 3 != 0, "the case where padding matters"
    with pytest.raises(ValueError):
        base64.urlsafe_b64decode(unpadded)  # the stdlib trap this helper exists for
    assert statehold.decode_state(unpadded) == snapshot
    assert statehold.decode_state(unpadded + "=" * (-len(unpadded) % 4)) == snapshot
    assert statehold.decode_state('{"raw": true}') == {"raw": True}
    assert statehold.decode_state(None) is None
    assert statehold.decode_state("") is None


def test_rejects_what_is_not_the_contract():
    # invalid characters, base64 of "{" (not JSON), bytes that are not UTF-8
    for bad in ["not base64!", "ew", "_-_-"]:
        with pytest.raises(statehold.ContractError):
            statehold.decode_state(bad)


def test_encodes_header_safe_text_that_round_trips():
    value = {"line": "a\nb", "emoji": "🚀", "quote": '"'}
    encoded = statehold.encode_state(value)
    assert encoded.isascii() and "=" not in encoded and "\n" not in encoded
    assert statehold.decode_state(encoded) == value


def incoming(state, key="tg:42"):
    return statehold.Incoming(key=key, version=3 if state else 0,
                              status="restored" if state else "new", state=state)


def test_the_mapping_replaces_a_dict_inside_a_request():
    states = statehold.ConversationStates()
    conversation, token = st.begin(incoming({"step": "name"}))
    try:
        assert 42 in states and "42" in states and 7 not in states
        states[42]["step"] = "email"  # a nested change is reported
        with pytest.raises(KeyError):
            states[7]
        with pytest.raises(ValueError):
            states[7] = {}
        assert list(states) == ["42"] and len(states) == 1
    finally:
        st.end(token)
    [(name, value)] = conversation.report_headers()
    assert name == "X-Statehold-State"
    assert statehold.decode_state(value) == {"step": "email"}


def test_unchanged_state_is_not_reported_and_a_deletion_clears():
    states = statehold.ConversationStates()
    unchanged, token = st.begin(incoming({"step": "name"}))
    assert states.get(42) == {"step": "name"}
    st.end(token)
    assert unchanged.report_headers() == []
    cleared, token = st.begin(incoming({"step": "name"}))
    states.pop(42)
    st.end(token)
    assert cleared.report_headers() == [("X-Statehold-Clear", "1")]
    assert cleared.report_member() == {"clear": True}
    fresh, token = st.begin(incoming(None))
    assert states.setdefault(42, {"step": "start"}) == {"step": "start"}
    st.end(token)
    assert fresh.report_member() == {"state": {"step": "start"}}


def test_outside_a_request_it_says_so():
    states = statehold.ConversationStates()
    with pytest.raises(statehold.NoConversation):
        states[42]
    assert 42 not in states
    keyless, token = st.begin(incoming(None, key=None))
    try:
        with pytest.raises(statehold.NoConversation):
            states[42]
    finally:
        st.end(token)


def test_ids_can_differ_when_asked():
    states = statehold.ConversationStates(check_ids=False)
    conversation, token = st.begin(incoming({"a": 1}, key="tg:-100200"))
    try:
        assert states[42] == {"a": 1}
    finally:
        st.end(token)


def test_body_member_in_and_out():
    from statehold.contract import put_member, take_member
    member, rest = take_member(b'{"text":"hi","_statehold":{"key":"web:1"}}')
    assert member == {"key": "web:1"} and rest == b'{"text":"hi"}'
    assert take_member(b"a=1") == (None, b"a=1")
    assert put_member(b'{"reply":"ok"}', {"clear": True}) == b'{"reply":"ok","_statehold":{"clear":true}}'
    assert put_member(b"plain text", {"clear": True}) is None
