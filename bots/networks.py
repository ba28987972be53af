"""Mixed networks: the same chatter, but the bots reach the server over different networks.

Most bots are on wi-fi, a tenth on mobile, one far away on a satellite link, and one
commuter on a flaky connection that stalls and is sometimes reset (it comes back).
Checks: nothing is lost, duplicated or reordered whatever the network does; the
report shades the stalls, pauses and resets next to the latency they cause.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Chatty(Bot):
    persona = "chatty"
    wait_time = poisson(2.0)

    @task()
    def chat(self):
        self.say()


class FarAway(Chatty):
    persona = "far away"
    network = "satellite"


class Commuter(Chatty):
    persona = "commuter"
    network = "flaky"
    rejoin = True  # after a reset, connect again at the next planned task


scenario = Scenario(
    mix={Chatty: 1},
    fixed={FarAway: 1, Commuter: 1},
    networks={"wifi": 0.8, "mobile": 0.1},
    bots=20,
    duration=5,
    description=__doc__,
)
