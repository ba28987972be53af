"""Churn and broadcast: users come and go all the time while everyone chats fast.

Built to make races show: every join and every leave changes the user list while
other threads are walking it to broadcast. Churners say /quit and come straight
back under a new name; chatters talk several times a second. Run it with a tiny
switch interval (``sys.setswitchinterval(1e-6)``, as ``chatlab ex check`` does) and
a server without a lock fails at once. Checks: nothing lost, duplicated or
reordered, one leave notice per departure, no ghosts.
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Churner(Bot):
    persona = "churner"
    wait_time = poisson(20.0)
    rejoin = True  # back at the next planned moment, under a new name
    visits = 0

    def choose_name(self):
        # A new name each time: a server that sends outside its lock without outboxes
        # (exercise 3) cannot order an old session's leave notice against the new
        # session's join for third parties; bots/disconnects.py tests name reuse.
        self.visits += 1
        return f"{self.name[:20]}{self.visits}"

    @task(2)
    def chat(self):
        self.say()

    @task(1)
    def drop_and_return(self):
        self.leave("quit")


class Chatter(Bot):
    persona = "chatter"
    wait_time = poisson(10.0)

    @task()
    def chat(self):
        self.say()


scenario = Scenario(mix={Churner: 1, Chatter: 1}, bots=12, ramp_up=0.0, duration=1.0, description=__doc__)
