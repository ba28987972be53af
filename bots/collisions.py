"""Name collisions: many bots race for a handful of names at the same instant.

Checks: exactly one bot wins each name, every other one gets `! name taken`, and the
winners then chat undisturbed.
"""

from chatlab.swarm import Bot, Scenario, poisson, task

CONTESTED = ["alice", "Bob", "carol"]


class Racer(Bot):
    persona = "racer"
    wait_time = poisson(2.0)

    def choose_name(self):
        name = CONTESTED[int(self.label[1:]) % len(CONTESTED)]
        return name.upper() if self.rng.random() < 0.5 else name  # Alice and ALICE are one name

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Racer: 1}, bots=30, ramp_up=0.0, duration=3, description=__doc__)
