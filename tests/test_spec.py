"""The specification documents every op in the table."""

from __future__ import annotations

import re
from pathlib import Path

from pcgraph.ops import OPS

SPEC = Path(__file__).resolve().parent.parent / "spec"


def test_every_op_is_documented_in_spec_ops_md() -> None:
    documented = set(re.findall(r"^### (\w+)\s*$", (SPEC / "ops.md").read_text(), re.M))
    assert sorted(set(OPS) - documented) == []
    assert sorted(documented - set(OPS)) == [], "spec/ops.md documents ops that do not exist"
