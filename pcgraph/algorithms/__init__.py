"""The learning algorithms: each is one ``Algorithm`` record (options and a schedule emitter).
``prog.grads(..., algorithm=NAME, **options)`` and ``prog.train_step`` look algorithms up here,
emit the algorithm's schedule and run it with ``Program.run``: an algorithm is its schedule.
The record and the registry live in ``base``; each algorithm module registers itself there.
"""

# isort: off
from pcgraph.algorithms import bp, epc, ilprox, ipc, predictive  # noqa: F401  (they register)
from pcgraph.algorithms import generative  # noqa: F401  (registered last: the listing order stays)

# isort: on
from pcgraph.algorithms.base import (
    ALGORITHMS,
    Algorithm,
    Option,
    choice,
    finite_rate,
    get_algorithm,
    positive_int,
    register,
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Option",
    "choice",
    "finite_rate",
    "get_algorithm",
    "positive_int",
    "register",
]
