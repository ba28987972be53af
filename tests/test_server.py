"""The servers end to end: every rule of PROTOCOL.md, over real sockets.

Every test runs against the threaded reference server and against its asyncio twin:
two I/O shells around one protocol core must behave the same.

To show that something did *not* reach a user, a test makes the same sender send a
marker line afterwards and checks that the marker is the very next line: lines from
one sender arrive in sending order, so nothing can hide behind the marker.
"""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from chatlab import protocol
from chatlab.aserver import AsyncChatServer
from chatlab.client import ChatClient, ConnectionClosed, NameRefused
from chatlab.protocol import ErrorLine, Message, Notice, encode_line
from chatlab.server import ChatServer, Outbox

TIMEOUT = 10.0

Server = ChatServer | AsyncChatServer


@pytest.fixture(params=[ChatServer, AsyncChatServer], ids=["threaded", "asyncio"])
def make_server(request):
    """The server class under test; call it like ChatServer (port 0 on 127.0.0.1)."""
    return lambda **options: request.param(host="127.0.0.1", port=0, **options)


@pytest.fixture
def server(make_server):
    """A server with default settings on a free port of 127.0.0.1, of each kind."""
    with make_server() as running:
        yield running


def join(server: Server, name: str) -> ChatClient:
    host, port = server.address
    return ChatClient.connect(host, port, name, timeout=TIMEOUT)


def open_raw(server: Server) -> ChatClient:
    """A connection that has not sent its name yet; the welcome is already read."""
    client = ChatClient.open(*server.address, timeout=TIMEOUT)
    assert client.next_received(TIMEOUT).text == protocol.WELCOME
    return client


def refusal(server: Server, name_line: bytes) -> list[str]:
    """Send a raw name line; return every line until the server closes."""
    with open_raw(server) as client:
        client.send_bytes(name_line)
        return client.wait_closed(TIMEOUT)


def assert_next(client: ChatClient, line: str) -> None:
    assert client.next_received(TIMEOUT).text == line


# -- handshake ----------------------------------------------------------------------


def test_welcome_is_the_first_line(server):
    with open_raw(server):
        pass


def test_first_user_is_greeted_alone(server):
    with join(server, "alice") as alice:
        assert alice.greeting == "* Hi alice! You are the first one here."


def test_greeting_lists_the_others_sorted_by_casefold_and_others_hear_the_join(server):
    with join(server, "bob") as bob, join(server, "Carol") as carol, join(server, "alice") as alice:
        assert alice.greeting == "* Hi alice! Online: bob, Carol"
        assert_next(bob, "* Carol joined")
        assert_next(bob, "* alice joined")
        assert_next(carol, "* alice joined")


def test_name_is_trimmed_and_nfc_normalized(server):
    with join(server, "  e\u0301mile\t") as emile, join(server, "bob") as bob:
        assert emile.greeting == "* Hi \u00e9mile! You are the first one here."
        assert bob.greeting == "* Hi bob! Online: \u00e9mile"


def test_cyrillic_names_work(server):
    with join(server, "Маша") as masha:
        assert masha.greeting == "* Hi Маша! You are the first one here."


@pytest.mark.parametrize(
    "name_line",
    [b"\n", b"   \n", b"a b\n", b"x" * 25 + b"\n", b"bob!\n", b"b:b\n", b"(bob)\n", b"\xff\xfe\n", b"\x1b[31mbob\n"],
    ids=["empty", "blank", "space", "too-long", "bang", "colon", "parens", "bad-utf8", "escape"],
)
def test_invalid_names_are_refused_and_closed(server, name_line):
    assert refusal(server, name_line) == [protocol.INVALID_NAME]


def test_an_over_long_name_line_is_an_invalid_name(server):
    assert refusal(server, b"a" * 5000 + b"\n") == [protocol.INVALID_NAME]


def test_taken_names_are_refused_under_casefold(server):
    with join(server, "Alice") as alice:
        assert refusal(server, b"ALICE\n") == ["! name taken: ALICE"]
        with pytest.raises(NameRefused, match="name taken: alice"):
            join(server, "alice")
        alice.say("still here")  # the winner is undisturbed


def test_a_refused_name_is_never_announced(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        refusal(server, b"ALICE\n")
        refusal(server, b"no way\n")
        alice.say("marker")
        assert_next(bob, "alice: marker")


def test_silent_connection_times_out_and_is_never_announced(make_server):
    with make_server(name_timeout=0.3) as server, join(server, "alice") as alice:
        with open_raw(server) as silent:
            assert silent.wait_closed(TIMEOUT) == [protocol.NAME_TIMED_OUT]
        with join(server, "bob"):
            assert_next(alice, "* bob joined")  # and not a leave notice for the silent one


def test_leaving_before_naming_is_never_announced(server):
    with join(server, "alice") as alice:
        open_raw(server).close()
        with join(server, "bob"):
            assert_next(alice, "* bob joined")


def test_name_and_first_message_in_one_packet_stay_apart(server):
    with join(server, "alice") as alice, open_raw(server) as bob:
        bob.send_bytes(b"bob\nhello there\n")
        assert bob.next_received(TIMEOUT).text == "* Hi bob! Online: alice"
        assert_next(alice, "* bob joined")
        assert_next(alice, "bob: hello there")


def test_server_full_counts_unnamed_connections(make_server):
    with make_server(max_clients=2) as server:
        with join(server, "alice"), open_raw(server):
            full = ChatClient.open(*server.address, timeout=TIMEOUT)
            assert full.wait_closed(TIMEOUT) == [protocol.SERVER_FULL]
            full.close()
        with join(server, "carol"):  # room again once those two are gone
            pass


# -- chatting -----------------------------------------------------------------------


def test_broadcast_reaches_everyone_else_without_echo(server):
    with join(server, "alice") as alice, join(server, "bob") as bob, join(server, "carol") as carol:
        alice.say("hello all")
        assert_next(bob, "* carol joined")
        assert_next(bob, "alice: hello all")
        assert_next(carol, "alice: hello all")
        alice.command("/users")
        assert_next(alice, "* bob joined")
        assert_next(alice, "* carol joined")
        assert_next(alice, "* Online (3): alice, bob, carol")  # no echo of "hello all"


def test_private_message_reaches_only_its_target(server):
    with join(server, "alice") as alice, join(server, "Bob") as bob, join(server, "carol") as carol:
        assert_next(alice, "* Bob joined")
        assert_next(alice, "* carol joined")
        assert_next(bob, "* carol joined")
        alice.whisper("BOB", "psst")
        assert_next(bob, "alice (private): psst")
        alice.say("marker")
        assert_next(carol, "alice: marker")


def test_private_message_to_oneself_is_delivered(server):
    with join(server, "alice") as alice:
        alice.whisper("Alice", "note to self")
        assert_next(alice, "alice (private): note to self")


def test_private_text_is_trimmed(server):
    with join(server, "alice") as alice:
        alice.send_line("@alice    spaced   out   ")
        assert_next(alice, "alice (private): spaced   out")


def test_private_message_to_a_missing_user_names_the_target_as_typed(server):
    with join(server, "alice") as alice:
        alice.whisper("Nobody", "hello?")
        assert_next(alice, "! no such user: Nobody")


@pytest.mark.parametrize("line", ["@bob", "@bob   ", "@", "@ hi"])
def test_private_message_without_target_or_text_gets_usage(server, line):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        alice.send_line(line)
        assert_next(alice, "* bob joined")
        assert_next(alice, protocol.USAGE_PRIVATE)
        alice.say("marker")
        assert_next(bob, "alice: marker")  # nothing leaked to bob


def test_users_help_and_unknown_commands(server):
    with join(server, "bob") as bob, join(server, "alice") as alice:
        alice.send_line("/USERS please")
        assert_next(alice, "* Online (2): alice, bob")
        alice.send_line("/Help me")
        assert_next(alice, protocol.HELP)
        alice.send_line("/Foo bar")
        assert_next(alice, "! unknown command: /Foo (try /help)")
        alice.send_line("/")
        assert_next(alice, "! unknown command: / (try /help)")
        alice.send_line("//shrug")
        assert_next(bob, "* alice joined")
        assert_next(bob, "alice: /shrug")


def test_quit_says_bye_closes_and_ignores_what_follows(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        bob.send_bytes(b"/quit\nafter quit\n")
        assert bob.wait_closed(TIMEOUT) == ["* Bye, bob!"]
        bob.close()
        assert_next(alice, "* bob joined")
        assert_next(alice, "* bob left")


# -- bad input ------------------------------------------------------------------------


def test_control_characters_are_removed_before_relaying(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        alice.send_line("\x1b[31mred\x1b[0m \u202eevil\u2028 \x85done\x7f")
        assert_next(bob, "alice: [31mred[0m evil done")
        alice.send_line("tab\there")
        assert_next(bob, "alice: tab here")


def test_a_line_empty_after_sanitizing_is_ignored(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        alice.send_line("  \x1b\x07\t ")
        alice.say("marker")
        assert_next(bob, "alice: marker")


def test_crlf_line_endings_are_accepted(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        alice.send_bytes(b"windows line\r\n")
        assert_next(bob, "alice: windows line")


def test_over_long_line_gets_one_error_and_the_connection_stays(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        assert_next(alice, "* bob joined")
        alice.send_bytes(b"x" * 10000 + b"\n" + b"after\n")
        assert_next(alice, "! line too long (max 4096 bytes)")
        assert_next(bob, "alice: after")
        exact = "y" * (protocol.MAX_LINE - 1)  # 4096 bytes with its LF: allowed
        alice.say(exact)
        assert_next(bob, f"alice: {exact}")


def test_max_line_is_configurable(make_server):
    with make_server(max_line=100) as server, join(server, "alice") as alice:
        alice.say("z" * 100)
        assert_next(alice, "! line too long (max 100 bytes)")


def test_invalid_utf8_is_dropped_and_the_connection_stays(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        assert_next(alice, "* bob joined")
        alice.send_bytes(b"caf\xc3 au lait\n")
        assert_next(alice, protocol.INVALID_UTF8)
        alice.say("marker")
        assert_next(bob, "alice: marker")


def test_lines_survive_any_split_across_sends(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        data = "привет, мир\nsecond line\n".encode()
        for index in range(len(data)):  # dribbled byte by byte, splitting every character
            alice.send_bytes(data[index : index + 1])
        assert_next(bob, "alice: привет, мир")
        assert_next(bob, "alice: second line")
        alice.send_bytes(b"one\ntwo\nthree\n")  # several lines in one send
        for word in ("one", "two", "three"):
            assert_next(bob, f"alice: {word}")


def test_bytes_after_the_last_newline_are_discarded_on_disconnect(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        bob.send_bytes(b"complete\nunfinished")
        bob.close()
        assert_next(alice, "* bob joined")
        assert_next(alice, "bob: complete")
        assert_next(alice, "* bob left")


def test_bad_input_does_not_disturb_anyone_else(server):
    with join(server, "alice") as alice, join(server, "bob") as bob, join(server, "mallory") as mallory:
        mallory.send_bytes(b"\xff" * 5000 + b"\n\xc3\n" + b"\x00" * 100 + b"\n@\n/\n")
        alice.say("still fine")
        assert_next(bob, "* mallory joined")
        assert_next(bob, "alice: still fine")


# -- flood limit ------------------------------------------------------------------------


def test_flood_limit_drops_lines_beyond_the_burst(make_server):
    now = [0.0]  # a clock that moves only when the test says so
    with make_server(rate=1.0, burst=3, clock=lambda: now[0]) as server:
        with join(server, "alice") as alice, join(server, "bob") as bob:
            assert_next(alice, "* bob joined")
            for index in range(4):
                alice.say(f"line {index}")
            assert_next(alice, protocol.SLOW_DOWN)
            now[0] += 1.0  # one token drips back in
            alice.say("after a second")
            for index in range(3):
                assert_next(bob, f"alice: line {index}")
            assert_next(bob, "alice: after a second")


def test_flood_limit_is_off_by_default(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        alice.send_bytes(b"".join(f"line {index}\n".encode() for index in range(500)))
        for index in range(500):
            assert_next(bob, f"alice: line {index}")


# -- departures -------------------------------------------------------------------------


def _leave_by_quit(client: ChatClient) -> None:
    client.quit(TIMEOUT)


def _leave_by_close(client: ChatClient) -> None:
    client.close()


def _leave_by_reset(client: ChatClient) -> None:
    client.reset()


def _leave_by_half_close(client: ChatClient) -> None:
    client.sock.shutdown(socket.SHUT_WR)  # we still read: the server sees EOF and says goodbye by closing
    client.wait_closed(TIMEOUT)
    client.close()


def _leave_mid_line(client: ChatClient) -> None:
    client.send_bytes(b"half a li")
    client.close()


@pytest.mark.parametrize(
    "leave",
    [_leave_by_quit, _leave_by_close, _leave_by_reset, _leave_by_half_close, _leave_mid_line],
    ids=["quit", "close", "reset", "half-close", "mid-line"],
)
def test_every_departure_is_announced_once_and_frees_the_name(server, leave):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        assert_next(alice, "* bob joined")
        leave(bob)
        assert_next(alice, "* bob left")
        with join(server, "bob"):  # the name was free before the notice was sent
            assert_next(alice, "* bob joined")  # exactly one leave notice came first


def test_messages_arrive_before_the_senders_leave_notice(server):
    with join(server, "alice") as alice, join(server, "bob") as bob:
        assert_next(alice, "* bob joined")
        bob.send_bytes(b"".join(f"last words {index}\n".encode() for index in range(100)))
        bob.reset()
        for index in range(100):
            assert_next(alice, f"bob: last words {index}")
        assert_next(alice, "* bob left")


# -- slow readers ------------------------------------------------------------------------


def _stalled_client(server: Server, name: str) -> socket.socket:
    """A joined client that never reads again, with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(server.address)
    sock.sendall(name.encode() + b"\n")
    return sock


def test_a_slow_reader_delays_nobody_and_is_cut_off(make_server):
    with make_server(outbox_limit=256 * 1024) as server:
        with join(server, "alice") as alice, join(server, "bob") as bob:
            stalled = _stalled_client(server, "slow")
            assert_next(alice, "* bob joined")
            assert_next(alice, "* slow joined")
            assert_next(bob, "* slow joined")
            padding = "x" * 1000
            sent = 0
            slow_left = False
            # Alice talks in batches and bob reads each batch completely before the
            # next: bob is never behind, while the stalled client falls further back
            # until its outbox overflows. Bob must get every line meanwhile.
            while not slow_left:
                assert sent < 20_000, "the stalled client was never cut off"
                for index in range(sent, sent + 50):
                    alice.say(f"{index} {padding}")
                for index in range(sent, sent + 50):
                    line = bob.next_received(TIMEOUT).text
                    if line == "* slow left":
                        slow_left = True
                        line = bob.next_received(TIMEOUT).text
                    assert line == f"alice: {index} {padding}"
                sent += 50
            stalled.close()
            with join(server, "slow"):  # the name is free again
                pass


# -- guarantees under load ------------------------------------------------------------------


def test_200_clients_get_every_broadcast_once_and_in_order(server):
    count, per_sender = 200, 3
    names = [f"user{index}" for index in range(count)]
    clients = [join(server, name) for name in names]
    try:
        rng = random.Random(2)
        order = [(client, turn) for client in clients for turn in range(per_sender)]
        rng.shuffle(order)
        next_turn = {client.name: 0 for client in clients}

        def send_share(share: list[tuple[ChatClient, int]]) -> None:
            for client, _ in share:
                turn = next_turn[client.name]
                next_turn[client.name] = turn + 1
                client.say(f"m{turn}")

        # Each client's lines go out from one thread only, so its turns stay in order.
        by_thread: dict[int, list[tuple[ChatClient, int]]] = {index: [] for index in range(8)}
        for client, turn in order:
            by_thread[names.index(client.name) % 8].append((client, turn))
        senders = [threading.Thread(target=send_share, args=(share,), name=f"sender-{i}") for i, share in by_thread.items()]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(TIMEOUT)

        for position, client in enumerate(clients):
            later_joiners = count - position - 1
            expected = later_joiners + (count - 1) * per_sender
            seen: dict[str, list[str]] = {}
            for _ in range(expected):
                line = client.next_line(TIMEOUT * 3)
                if isinstance(line, Notice):
                    assert line.joined is not None
                    seen.setdefault(line.joined, []).append("joined")
                else:
                    assert isinstance(line, Message) and not line.private
                    assert "joined" in seen.get(line.sender, []) or names.index(line.sender) < position
                    seen.setdefault(line.sender, []).append(line.text)
            for sender in names:
                if sender != client.name:
                    texts = [text for text in seen.get(sender, []) if text != "joined"]
                    assert texts == [f"m{turn}" for turn in range(per_sender)], (client.name, sender)
    finally:
        for client in clients:
            client.close()


# -- shutdown --------------------------------------------------------------------------------


def test_stop_tells_everyone_closes_everything_and_joins_every_thread(make_server):
    before = set(threading.enumerate())
    server = make_server().start()
    alice, bob = join(server, "alice"), join(server, "bob")
    unnamed = open_raw(server)
    assert_next(alice, "* bob joined")
    server.stop()
    assert alice.wait_closed(TIMEOUT) == [protocol.SHUTTING_DOWN]  # no leave notices
    assert bob.wait_closed(TIMEOUT) == [protocol.SHUTTING_DOWN]
    assert unnamed.wait_closed(TIMEOUT) == [protocol.SHUTTING_DOWN]
    for client in (alice, bob, unnamed):
        client.close()
    assert not [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=TIMEOUT)


def test_stop_does_not_wait_forever_for_a_client_that_does_not_read(make_server):
    server = make_server(shutdown_flush=0.2).start()
    stalled = _stalled_client(server, "slow")
    with join(server, "alice") as alice:
        alice.say("x" * 4000)
        server.stop()  # returns although "slow" never reads: the flush is bounded
        with pytest.raises(ConnectionClosed):
            alice.expect(lambda line: False, TIMEOUT)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stalled.close()


def test_sockets_set_tcp_nodelay(server):
    with join(server, "alice"):
        sockets = server.sockets()
        assert sockets and all(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in sockets)


def test_error_lines_parse_as_errors(server):
    with join(server, "alice") as alice:
        alice.send_line("/nope")
        assert isinstance(alice.next_line(TIMEOUT), ErrorLine)


# -- the outbox on its own: plain memory, no sockets ------------------------------------


def test_the_outbox_hands_out_everything_queued_in_order_and_takes_back_the_rest():
    outbox = Outbox(limit=1000)
    assert outbox.put(b"one\n") and outbox.put(b"two\n")
    data = outbox.take()
    assert data == b"one\ntwo\n"
    outbox.put(b"three\n")  # queued while the sender writes
    outbox.sent(data, 5)  # the socket took "one\nt"
    assert outbox.take() == b"wo\nthree\n"


def test_an_overflow_finishes_the_half_sent_line_before_the_too_slow_notice():
    outbox = Outbox(limit=20)
    outbox.put(b"0123456789\n")
    data = outbox.take()
    assert not outbox.put(b"abcdefghij\n")  # 11 in flight + 11 > 20: too slow
    outbox.sent(data, 4)
    assert outbox.take() == b"456789\n" + encode_line(protocol.TOO_SLOW)
    assert not outbox.put(b"more\n") and outbox.overflowed


def test_retiring_waits_for_a_send_in_progress_then_hands_out_nothing():
    outbox = Outbox(limit=1000)
    outbox.put(b"hello\n")
    data = outbox.take()
    assert not outbox.retire(timeout=0.01)  # the sender is still writing
    outbox.sent(data, 2)
    assert outbox.retire(timeout=0)
    assert outbox.take() == b""
