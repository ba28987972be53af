"""The bug hunt's check: your scenario against the correct server and every zoo server.

It runs ``hunt.py`` as the swarm would, once against the correct server (it must
find nothing there) and once against each zoo server (it must find something),
and says which bugs got away. The hunting is done by :func:`chatlab.zoo.hunt.check`;
this file only puts its verdict in the runner's words.
"""

from chatlab.exercises.kit import CheckContext, CheckResult, Requirement
from chatlab.zoo.hunt import check


def hunt(context: CheckContext) -> CheckResult:
    verdict = check(context.folder, seed=context.seed)
    result = CheckResult("the hunt")
    for found in verdict.requirements:
        if found.passed or found.name != "catches every bug":
            result.requirements.append(Requirement(found.name, found.passed, got=found.message))
            continue
        total = len(verdict.caught) + len(verdict.missed)
        result.requirements.append(
            Requirement(
                f"catches every bug (caught {len(verdict.caught)} of {total})",
                False,
                expected=f"the checker complains about all {total} zoo servers",
                got=f"{len(verdict.missed)} bugs went unnoticed (see below)",
                transcript=found.message.splitlines()[1:],
            )
        )
    return result
