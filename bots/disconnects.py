"""Every way to leave: /quit, a clean close, a reset, a half-close, dying mid-line.

Churners chat, leave in one of five ways, and come back under the same name.
Checks: everyone else sees exactly one `* name left` for each departure, and the
name can be taken again at once.
"""

from chatlab.swarm import Bot, Scenario, poisson, task

WAYS_TO_LEAVE = ["quit", "close", "reset", "half-close", "mid-line"]


class Churner(Bot):
    persona = "churner"
    wait_time = poisson(2.0)
    rejoin = True  # come back at the next planned moment, under the same name

    @task(3)
    def chat(self):
        self.say()

    @task(1)
    def leave_somehow(self):
        self.leave(self.rng.choice(WAYS_TO_LEAVE))


class Witness(Bot):
    persona = "witness"
    wait_time = poisson(1.0)

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Churner: 3, Witness: 1}, bots=16, duration=5, description=__doc__)
