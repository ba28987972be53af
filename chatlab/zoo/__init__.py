"""The bug zoo: chat servers with exactly one planted bug each, for the autograder and the bug hunt.

``chatlab.zoo.base.ZooServer`` is a small correct server; every server in
``chatlab.zoo.bugs.ZOO`` changes one of its methods. ``python -m chatlab.zoo --list``
shows them, ``python -m chatlab.zoo NAME --port 1234`` runs one.
"""

from chatlab.zoo.base import ZooServer
from chatlab.zoo.bugs import ZOO

CORRECT = "correct"  #: the name of the keeper itself, the zoo server without a bug


def server_class(name: str) -> type[ZooServer]:
    """The zoo server called ``name`` (``correct`` for the one without a bug); KeyError if none."""
    if name == CORRECT:
        return ZooServer
    return ZOO[name]


__all__ = ["CORRECT", "ZOO", "ZooServer", "server_class"]
