"""Steady chatter: every bot broadcasts at random moments.

Checks: every broadcast reaches every other member exactly once, in each sender's
order, with no echo to its sender.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Chatty(Bot):
    persona = "chatty"
    wait_time = poisson(2.0)  # two lines a second on average, at random moments

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Chatty: 1}, bots=20, duration=5, description=__doc__)
