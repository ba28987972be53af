"""Bad input from PROTOCOL.md, sent among well-behaved bots.

Hostile bots send over-long lines, invalid UTF-8, ANSI escapes, lines dribbled one
byte at a time and UTF-8 characters split across writes; a few connections never
send a name. Checks: the server stays up, and every line, however it was cut up on
the way, arrives whole, attributed to its sender, and sanitized.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Hostile(Bot):
    persona = "hostile"
    wait_time = poisson(4.0)

    @task()
    def over_long_line(self):
        self.send_raw(b"x" * 10_000 + b"\n", "a 10,000-byte line")

    @task()
    def invalid_utf8(self):
        self.send_raw(b"caf\xc3 \xff\xfe\n", "invalid UTF-8")

    @task()
    def ansi_escapes(self):
        self.say("\x1b[2J\x1b[31mred alert\x1b[0m")  # clear screen, colours

    @task()
    def dribble(self):
        self.say(pieces=1000)  # one byte per write

    @task()
    def split_characters(self):
        self.say("Привет, как дела? Всё хорошо.", pieces=6)  # cuts land inside characters

    @task()
    def cyrillic_over_a_kilobyte(self):
        self.say("ж" * 700)  # 1400 bytes: more than one recv(1024)


class Silent(Bot):
    persona = "silent"
    sends_name = False  # connects and never says who it is


class Polite(Bot):
    persona = "polite"
    wait_time = poisson(2.0)

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Polite: 2, Hostile: 1}, fixed={Silent: 2}, bots=12, duration=4, description=__doc__)
