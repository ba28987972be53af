"""A slow reader: one bot stops reading while the others chat with long lines.

Checks: the others lose nothing and their latency stays flat, and the server
eventually cuts the frozen one off (its leave notice reaches everyone). An
in-process server gets a small outbox and small kernel send buffers, so that this
happens within a second instead of after megabytes.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Frozen(Bot):
    persona = "frozen"
    receive_buffer = 4096  # a small window: the server's buffers fill fast

    def on_join(self):
        self.stop_reading()


class Talker(Bot):
    persona = "talker"
    wait_time = poisson(10.0)

    @task()
    def chat(self):
        self.say(" ".join(self.sentence() for _ in range(40)))  # about 2 KB a line


scenario = Scenario(
    mix={Talker: 1},
    fixed={Frozen: 1},
    bots=10,
    duration=5,
    server_options={"outbox_limit": 64 * 1024, "send_buffer": 16 * 1024},
    description=__doc__,
)
