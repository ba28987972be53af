"""The bug hunt's check: your scenario against the correct server and every zoo server.

It runs ``hunt.py`` as the swarm would, once against the correct server (it must
find nothing there) and once against each zoo server (it must find something),
and says which bugs got away. The work is done by :func:`chatlab.zoo.hunt.check`.
"""

from chatlab.exercises.kit import CheckContext
from chatlab.zoo.hunt import HuntResult, check


def hunt(context: CheckContext) -> HuntResult:
    return check(context.folder, seed=context.seed)
