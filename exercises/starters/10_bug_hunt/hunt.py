"""The bug hunt: write bots whose behaviour makes every planted bug of the zoo show.

Run it against one zoo server while you work:

    python -m chatlab.zoo echo --port 1234          # in one terminal
    chatlab swarm exercises/10_bug_hunt/hunt.py --target 127.0.0.1:1234

The exercise's check runs this file against every zoo server and counts the bugs
it catches. It must find nothing on the correct server (`python -m chatlab.zoo correct`).
"""

from chatlab.swarm import Bot, Scenario, poisson, task


class Chatter(Bot):
    persona = "chatter"
    wait_time = poisson(2.0)

    @task()
    def chat(self):
        self.say()

    # TODO: a bot that only says plain lines catches one bug. What else do users do?
    # Whisper (self.whisper_someone()), send lines in pieces (self.say(pieces=5)),
    # ask /users (self.command("/users")), send bad bytes (self.send_raw(...)),
    # leave in every way (self.leave("reset")) and come back (rejoin = True),
    # race for one name (choose_name), stop reading (self.stop_reading())...


# TODO: add your bot classes to the mix (weights) or to fixed (exact counts).
scenario = Scenario(mix={Chatter: 1}, bots=8, duration=2.0, description=__doc__)
