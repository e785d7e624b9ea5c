"""Parley over HTTP from Python with Google's protobuf runtime (Connect protocol,
unary, Content-Type application/proto). Run by python_proto_test.sh with the
code protoc generated from proto/ on PYTHONPATH; argv[1] is parleyd's HTTP URL.

Only the standard library and python3-protobuf: what a Python team would write
from the Connect specification without any Parley code.
"""
import json
import sys
import urllib.error
import urllib.request

from google.protobuf import json_format

from parley.v1 import auth_pb2, history_pb2, messaging_pb2, rooms_pb2

BASE = sys.argv[1]


class ConnectError(Exception):
    def __init__(self, http_status, code, message):
        super().__init__(f"HTTP {http_status} {code}: {message}")
        self.http_status, self.code, self.message = http_status, code, message


def call(method, request, response_type, token=None):
    """POST /parley.v1.<Service>/<Method> with the binary message."""
    headers = {"Content-Type": "application/proto", "Connect-Protocol-Version": "1"}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(BASE + "/parley.v1." + method, data=request.SerializeToString(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = resp.read()
            check(resp.status == 200, f"{method}: HTTP {resp.status}")
            check(ctype.startswith("application/proto"), f"{method}: Content-Type {ctype!r}")
            out = response_type()
            out.ParseFromString(body)
            return out
    except urllib.error.HTTPError as e:
        body = e.read()
        ctype = e.headers.get("Content-Type", "")
        # Connect: a unary error is always a JSON body, whatever the codec
        check(ctype.startswith("application/json"),
              f"{method}: error with Content-Type {ctype!r}: {body!r}")
        err = json.loads(body)
        raise ConnectError(e.code, err.get("code"), err.get("message", "")) from None


def call_json(method, request, response_type, token=None, proto_names=False):
    """The same call in JSON: the body written by Google's json_format, the
    answer read back by it strictly (an unknown field is an error)."""
    headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    if token:
        headers["Authorization"] = "Bearer " + token
    body = json_format.MessageToJson(request, preserving_proto_field_name=proto_names)
    req = urllib.request.Request(BASE + "/parley.v1." + method, data=body.encode(),
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        ctype = resp.headers.get("Content-Type", "")
        check(ctype.startswith("application/json"), f"{method}: Content-Type {ctype!r}")
        text = resp.read().decode()
    return json_format.Parse(text, response_type()), text


def expect_error(http_status, code, method, request, response_type, token=None):
    try:
        call(method, request, response_type, token)
    except ConnectError as e:
        check(e.http_status == http_status and e.code == code,
              f"{method}: got HTTP {e.http_status} {e.code!r}, want {http_status} {code!r} ({e.message})")
        check(e.message, f"{method}: Connect error without a message")
        return e
    fail(f"{method}: succeeded, want {code}")


def check(cond, what):
    if not cond:
        fail(what)


def fail(what):
    print("FAIL:", what, file=sys.stderr)
    sys.exit(1)


def signup(user):
    password = "pw-" + user + "-secret"
    r = call("Auth/Register", auth_pb2.RegisterRequest(
        user_id=user, password=password, display_name=user.capitalize()), auth_pb2.RegisterResponse)
    check(r.user.user_id == user and r.user.created_at_ms > 0, f"register {user}: {r}")
    r = call("Auth/Login", auth_pb2.LoginRequest(user_id=user, password=password),
             auth_pb2.LoginResponse)
    check(len(r.token) >= 40 and r.expires_at_ms > 0 and r.user.user_id == user, f"login: {r}")
    return r.token


def main():
    alice = signup("alice")
    bob = signup("bob")
    print("ok register and log in")

    r = call("Rooms/CreateRoom", rooms_pb2.CreateRoomRequest(room_id="lobby", topic="tea"),
             rooms_pb2.CreateRoomResponse, alice)
    check(r.room.room_id == "lobby" and r.room.created_by == "alice" and r.room.topic == "tea",
          f"create room: {r}")
    r = call("Rooms/JoinRoom", rooms_pb2.JoinRoomRequest(room_id="lobby"),
             rooms_pb2.JoinRoomResponse, bob)
    check(r.room.member_count == 2, f"join: {r}")
    r = call("Rooms/ListMyRooms", rooms_pb2.ListMyRoomsRequest(), rooms_pb2.ListMyRoomsResponse, bob)
    check([x.room_id for x in r.rooms] == ["lobby"], f"my rooms: {r}")
    print("ok create and join a room")

    sent = []
    for i, (token, text) in enumerate([(alice, "hello"), (bob, "hi alice"),
                                       (alice, "caf\u00e9 \u2615 \U0001F600")]):
        r = call("Messaging/Send", messaging_pb2.SendRequest(
            room_id="lobby", text=text, client_msg_id=f"py-{i}"), messaging_pb2.SendResponse, token)
        check(r.seq > 0 and r.ts_ms > 0, f"send: {r}")
        check(not sent or r.seq > sent[-1][0], f"seq {r.seq} after {sent[-1][0] if sent else 0}")
        sent.append((r.seq, text))
    # a retried Send (same client_msg_id) returns the original seq
    r = call("Messaging/Send", messaging_pb2.SendRequest(
        room_id="lobby", text="hello", client_msg_id="py-0"), messaging_pb2.SendResponse, alice)
    check(r.seq == sent[0][0], f"retried send got seq {r.seq}, want {sent[0][0]}")
    print("ok send (and an idempotent retry)")

    h = call("History/GetHistory", history_pb2.GetHistoryRequest(room_id="lobby"),
             history_pb2.GetHistoryResponse, bob)
    seqs = [e.seq for e in h.events]
    check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"history order: {seqs}")
    chat = [(e.seq, e.message.text) for e in h.events if e.WhichOneof("body") == "message"]
    check(chat == sent, f"history messages {chat}, want {sent}")
    joins = [e.sender for e in h.events if e.WhichOneof("body") == "membership"]
    check("bob" in joins, f"bob's join not in history: {h}")
    check(h.head_seq == seqs[-1], f"head_seq {h.head_seq}, last {seqs[-1]}")
    senders = [e.sender for e in h.events if e.WhichOneof("body") == "message"]
    check(senders == ["alice", "bob", "alice"], f"senders {senders}")
    print("ok history: every message once, in order, with bob's join")

    # The same history in JSON, read by Google's parser, equals the binary
    # one: 64-bit integers as strings, enums by name, oneofs, nesting.
    hj, text = call_json("History/GetHistory", history_pb2.GetHistoryRequest(room_id="lobby"),
                         history_pb2.GetHistoryResponse, bob)
    check(hj == h, f"JSON history differs from binary:\n{text}\n{h}")
    check('"headSeq":"' in text.replace(" ", "") and '"kind":"JOINED"' in text.replace(" ", ""),
          f"not canonical proto3 JSON: {text}")
    r, text = call_json("Messaging/Send", messaging_pb2.SendRequest(
        room_id="lobby", text="json \u00e9", client_msg_id="py-json"),
        messaging_pb2.SendResponse, alice, proto_names=True)
    check(r.seq > sent[-1][0], f"send in JSON with proto field names: {text}")
    sent.append((r.seq, "json \u00e9"))
    print("ok JSON: Google's json_format and Parley's codec read each other")

    # errors: the Connect error body and its HTTP status
    expect_error(401, "unauthenticated", "Auth/Login",
                 auth_pb2.LoginRequest(user_id="alice", password="wrong-password"),
                 auth_pb2.LoginResponse)
    expect_error(401, "unauthenticated", "Messaging/Send",
                 messaging_pb2.SendRequest(room_id="lobby", text="x", client_msg_id="bad"),
                 messaging_pb2.SendResponse, "not-a-token")
    expect_error(401, "unauthenticated", "Rooms/ListMyRooms", rooms_pb2.ListMyRoomsRequest(),
                 rooms_pb2.ListMyRoomsResponse)
    e = expect_error(400, "invalid_argument", "Rooms/CreateRoom",
                     rooms_pb2.CreateRoomRequest(room_id="Bad Room!"),
                     rooms_pb2.CreateRoomResponse, alice)
    check("room" in e.message.lower(), f"invalid room message: {e.message!r}")
    call("Rooms/CreateRoom", rooms_pb2.CreateRoomRequest(room_id="private"),
         rooms_pb2.CreateRoomResponse, alice)
    expect_error(403, "permission_denied", "History/GetHistory",
                 history_pb2.GetHistoryRequest(room_id="private"),
                 history_pb2.GetHistoryResponse, bob)
    expect_error(409, "already_exists", "Auth/Register",
                 auth_pb2.RegisterRequest(user_id="alice", password="another-secret",
                                          display_name="A"), auth_pb2.RegisterResponse)
    print("ok errors: Connect error bodies with their HTTP statuses")
    print("python_proto_test: 7 passed, 0 failed")


main()
