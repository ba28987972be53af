"""A join storm: every bot connects within one second, then says one line.

Checks: every member hears every later joiner's notice before that joiner's line,
and each greeting lists who was there.
"""

from chatlab.swarm import Bot, Scenario, constant, task


class Newcomer(Bot):
    persona = "newcomer"
    wait_time = constant(1.0)

    def on_join(self):
        self.say()  # proves the others learned of the join before its first message

    @task()
    def look_around(self):
        self.command("/users")


scenario = Scenario(mix={Newcomer: 1}, bots=40, ramp_up=1.0, duration=2, description=__doc__)
