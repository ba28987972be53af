"""The bug hunt, solved: one persona per kind of trouble, together in one room.

Each bot class makes one family of bugs show; the swarm's checker does the judging.
Against the correct server this scenario finds nothing, so every complaint it
raises against a zoo server is that server's bug.
"""

from chatlab.swarm import Bot, Scenario, constant, poisson, task

CONTESTED = "alice"  # the one name the racers fight over


class Chatter(Bot):
    """Says things in every shape a line can take, whispers, and asks who is online."""

    persona = "chatter"
    wait_time = poisson(6.0)

    @task(4)
    def chat(self):
        self.say()  # echo: the sender gets its own line back

    @task(2)
    def chat_in_pieces(self):
        self.say(pieces=5)  # no-line-buffer: each piece becomes a line of its own

    @task(1)
    def chat_in_colour(self):
        self.say("\x1b[31mred alert\x1b[0m")  # no-sanitizer: the escapes are relayed as they came

    @task(2)
    def whisper_a_friend(self):
        self.whisper_someone()  # leaky-private: the secret reaches everyone

    @task(1)
    def who_is_here(self):
        self.command("/users")  # users-without-self: the answer leaves out the asker


class Churner(Bot):
    """Comes and goes in every way: joins and leaves change the user list under the others' feet."""

    persona = "churner"
    wait_time = poisson(3.0)
    rejoin = True

    @task(2)
    def chat(self):
        self.say()

    @task(1)
    def leave_somehow(self):
        # silent-reset (reset), double-leave (quit), unlocked-roster (all of it, under broadcast)
        self.leave(self.rng.choice(["quit", "reset", "close"]))


class Flooder(Bot):
    """Broadcasts fifty short lines a second: the server is nearly always in the middle of
    a broadcast, so a join or a leave that changes the user list lands inside one."""

    persona = "flooder"
    wait_time = constant(0.02)

    @task()
    def flood(self):
        self.say("flood")  # unlocked-roster: "dictionary changed size during iteration"


class Racer(Bot):
    """Fights for a contested name, in either case, and gives it up again at once.

    A constant think time puts every racer's tasks at the same planned instants: the
    losers come back all together, at the very moment the winner leaves.
    """

    persona = "racer"
    wait_time = constant(0.2)
    rejoin = True

    def choose_name(self):
        return CONTESTED.upper() if self.rng.random() < 0.5 else CONTESTED  # case-sensitive-names

    @task()
    def give_it_back(self):
        self.leave("quit")  # racy-names: the next race begins at the next planned moment


class Hostile(Bot):
    """Sends what PROTOCOL.md says a server must survive."""

    persona = "hostile"
    wait_time = poisson(3.0)

    @task()
    def bad_utf8(self):
        self.send_raw(b"caf\xc3 \xff\n", "invalid UTF-8")  # crash-on-bad-utf8: we get disconnected

    @task()
    def far_too_long(self):
        self.send_raw(b"x" * 10_000 + b"\n", "a 10,000-byte line")  # no-length-limit: relayed untagged


class Frozen(Bot):
    """Stops reading at once: a correct server cuts it off, a bad one freezes the room."""

    persona = "frozen"
    receive_buffer = 4096

    def on_join(self):
        self.stop_reading()  # send-under-lock: everyone else stops receiving


class Talker(Bot):
    """Long lines, so that the frozen bot's buffers fill quickly."""

    persona = "talker"
    wait_time = poisson(10.0)

    @task()
    def chat_long(self):
        self.say(" ".join(self.sentence() for _ in range(40)))


scenario = Scenario(
    mix={Chatter: 4, Churner: 3, Racer: 5, Talker: 2},
    fixed={Hostile: 1, Frozen: 1, Flooder: 1},
    bots=20,
    ramp_up=0.5,
    duration=3.0,
    description=__doc__,
)
