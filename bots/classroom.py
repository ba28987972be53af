"""A realistic classroom: lurkers, chatty students, whisperers and comings and goings.

The default scenario of `make demo`.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Lurker(Bot):
    persona = "lurker"
    wait_time = poisson(0.2)

    @task(1)
    def check_who_is_here(self):
        self.command("/users")

    @task(1)
    def say_something_rare(self):
        self.say()


class Student(Bot):
    persona = "chatty"
    wait_time = poisson(1.0)

    @task(5)
    def chat(self):
        self.say()

    @task(1)
    def whisper(self):
        self.whisper_someone()


class Commuter(Bot):
    persona = "churner"
    wait_time = poisson(0.5)
    rejoin = True

    @task(3)
    def chat(self):
        self.say()

    @task(1)
    def leave_and_come_back(self):
        self.leave(self.rng.choice(["quit", "close", "reset"]))


scenario = Scenario(
    mix={Lurker: 3, Student: 4, Commuter: 2},
    bots=30,
    ramp_up=2.0,
    duration=15,
    description=__doc__,
)
