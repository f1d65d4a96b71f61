"""`make demo`: train one MLP on real data (scikit-learn's 8x8 digits) with backprop, Z-IL, IL and
FPA from the same initial parameters and batches, and show the loss falling, Z-IL's parameters
staying equal to backprop's (max |p - p_bp| = 0) and IL's drifting away.

The same comparison on any model: ``pcgraph compare --model NAME --data mnist ...``.
"""

from __future__ import annotations

import sys

from pcgraph.cli import main

ARGS = [
    "compare",
    "--model",
    "mlp",
    "--model-args",
    "sizes=(64,64,10),activation=tanh",
    "--data",
    "digits",
    "--algorithms",
    "bp,zil,il,fpa",
    "--epochs",
    "8",
    "--lr",
    "0.1",
    "--out",
    "runs/demo",
    "--overwrite",  # `make demo` may run again: its folder holds only the demo's own run
]

if __name__ == "__main__":
    sys.exit(main(ARGS + sys.argv[1:]))
