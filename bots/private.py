"""Whisper traffic: to someone online, to a name nobody holds, to oneself, to no one.

Checks: a private line reaches its target and nobody else, in sending order.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Whisperer(Bot):
    persona = "whisperer"
    wait_time = poisson(2.0)

    @task(6)
    def whisper_a_friend(self):
        self.whisper_someone()

    @task(1)
    def whisper_nobody(self):
        self.whisper(f"nobody_{self.rng.randrange(1000)}")

    @task(1)
    def whisper_myself(self):
        self.whisper(self.name.upper())  # names match under casefold

    @task(1)
    def whisper_without_target(self):
        self.whisper("")  # "@ text": refused with the usage line, delivered to nobody

    @task(2)
    def chat(self):
        self.say()


scenario = Scenario(mix={Whisperer: 1}, bots=20, duration=5, description=__doc__)
