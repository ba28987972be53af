"""One flooder among normal bots.

The flooder sends as fast as its schedule allows; the others chat normally.
Checks: nothing is lost; the report's fairness figures show what the flood does to
everyone else's latency.
"""

from chatlab.swarm import Bot, Scenario, constant, poisson, task


class Flooder(Bot):
    persona = "flooder"
    wait_time = constant(0.002)  # 500 lines a second

    @task()
    def flood(self):
        self.say()


class Normal(Bot):
    persona = "normal"
    wait_time = poisson(1.0)

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Normal: 1}, fixed={Flooder: 1}, bots=15, duration=4, description=__doc__)
