"""chatlab: a teaching and lab kit for concurrent network programming in Python."""

import logging

__version__ = "0.1.0"

# A library logs, an application decides where logs go: `chatlab server` sends them to
# stderr, while a server started in a notebook or a swarm stays quiet.
logging.getLogger("chatlab").addHandler(logging.NullHandler())
