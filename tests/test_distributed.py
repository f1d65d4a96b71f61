"""Data-parallel training on MPI (``pcgraph.distributed``): N ranks give one process's
parameters on the same global batches, for every algorithm, to summation-order rounding
(float64 1e-12, float32 1e-5 relative, after 20 steps), with uneven shards; reruns with the
same N are bit-identical; every rank holds the same parameters; a rank that raises stops every
rank with its message.  The reference is one process training on the whole batches (what data
parallelism must reproduce), computed in rank 0 of the same launch without MPI.

The MPI runs need mpi4py and an ``mpiexec`` (``pip install 'pcgraph[mpi]'``: the mpich wheel
brings both); they skip with the reason where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc
from pcgraph.errors import OptionError

WORKER = Path(__file__).with_name("mpi_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _mpiexec() -> str | None:
    here = Path(sys.executable).with_name("mpiexec")  # the venv's, from the mpich wheel
    return str(here) if here.exists() else shutil.which("mpiexec")


def _launch(n: int, mode: str, out: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'pcgraph[mpi]')")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'pcgraph[mpi]' brings MPICH's)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [mpiexec, "-n", str(n), sys.executable, str(WORKER), mode, str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _equivalence(n: int, tmp_path: Path) -> dict:
    out = tmp_path / f"n{n}.json"
    proc = _launch(n, "equivalence", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def launches(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("mpi")
    return {"2": _equivalence(2, tmp), "2-again": _equivalence(2, tmp), "3": _equivalence(3, tmp)}


@pytest.mark.parametrize("n", ["2", "3"])
def test_n_ranks_give_one_process_parameters_for_every_algorithm(launches: dict, n: str) -> None:
    results = {k: v for k, v in launches[n].items() if not k.startswith("_")}
    assert {"bp", "zil", "fpa", "il", "il-prox", "ipc", "bn-il", "f32-il"} <= set(results)
    for label, r in results.items():
        tol = 1e-12 if r["dtype"] == "float64" else 1e-5
        assert r["moved"] > 1e-3, label  # the training did move the parameters
        assert r["max_abs_diff"] <= tol * max(r["scale"], 1.0), (label, r)
        assert r["ranks_identical"], label


def test_reruns_with_the_same_number_of_ranks_are_bit_identical(launches: dict) -> None:
    for label, r in launches["2"].items():
        if not label.startswith("_"):
            assert r["digest"] == launches["2-again"][label]["digest"], label


def test_one_allreduce_per_step_sends_the_parameters_once(launches: dict) -> None:
    info = launches["2"]["_comm"]
    assert info["size"] == 2 and info["reduced_bytes"] > 0


def test_a_rank_that_raises_stops_every_rank_with_its_message(tmp_path: Path) -> None:
    proc = _launch(2, "fault", tmp_path / "fault.json", timeout=120)  # a hang fails by timeout
    assert proc.returncode != 0
    assert "injected fault on rank 1" in proc.stderr
    assert "aborting every rank" in proc.stderr


# ------------------------------------------------------------------ the command line
RUN = ["--model", "mlp", "--model-args", "sizes=(64,16,10)", "--data", "digits", "--limit", "307"]
RUN += ["--test-limit", "50", "--epochs", "2", "--batch-size", "50", "--dtype", "float64"]


def _cli(n: int, argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'pcgraph[mpi]')")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'pcgraph[mpi]' brings MPICH's)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [mpiexec, "-n", str(n), sys.executable, "-m", "pcgraph.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_mpiexec_pcgraph_train_distributed_ends_where_one_process_does(tmp_path: Path) -> None:
    from pcgraph import cli

    argv = ["train", *RUN, "--algorithm", "il", "--no-plot", "--no-progress"]
    proc = _cli(3, [*argv, "--distributed", "--out", str(tmp_path / "three")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch   2/2") == 1  # rank 0 alone prints
    assert cli.main([*argv, "--out", str(tmp_path / "one")]) == 0
    prog = pc.compile(pc.load_graph(tmp_path / "one" / "graph.json"), dtype="float64")
    one = pc.load(tmp_path / "one" / "checkpoint.npz", prog).params
    three = pc.load(tmp_path / "three" / "checkpoint.npz", prog).params
    assert pc.compare.max_abs_diff(three, one) <= 1e-12
    rows = [
        json.loads((tmp_path / d / "metrics.json").read_text())["epochs"] for d in ("one", "three")
    ]
    assert [r["test_acc"] for r in rows[0]] == [r["test_acc"] for r in rows[1]]


def test_mpiexec_pcgraph_compare_distributed_runs_every_algorithm(tmp_path: Path) -> None:
    argv = ["compare", *RUN, "--algorithms", "bp,zil,il", "--no-plot", "--distributed"]
    proc = _cli(2, [*argv, "--out", str(tmp_path / "cmp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["epochs"]
    zil = [r for r in rows if r["algorithm"] == "zil"]
    assert len(zil) == 2 and all(r["max_abs_diff_vs_bp"] < 1e-10 for r in zil)


def test_a_command_failing_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.csv").write_text("")  # rank 0 refuses the folder
    argv = ["train", *RUN, "--distributed", "--out", str(tmp_path / "taken")]
    proc = _cli(2, argv, timeout=120)  # the other rank waits in a collective: a hang times out
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr and "stopping every rank" in proc.stderr


# ------------------------------------------------------------------ without MPI
def test_world_outside_a_launcher_is_one_process_alone() -> None:
    comm = pc.distributed.world()
    if pc.distributed.launched_by_mpi():
        pytest.skip("this pytest runs under an MPI launcher")
    assert (comm.rank, comm.size, comm.distributed) == (0, 1, False)
    batch = {"x": np.zeros((5, 2)), "y": np.zeros(5, dtype=np.int64)}
    assert comm.shard(batch)["x"].shape == (5, 2)
    assert comm.sum([np.ones(3)])[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("size", [2, 3, 4])
def test_shards_are_contiguous_blocks_covering_the_batch_in_rank_order(size: int) -> None:
    for n in (size, 7, 25, 64):
        ranges = []
        for rank in range(size):
            comm = pc.distributed.Comm()
            comm.rank, comm.size = rank, size
            ranges.append(comm.shard_range(n))
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        lengths = [b - a for a, b in ranges]
        assert max(lengths) - min(lengths) <= 1


def test_a_batch_smaller_than_the_ranks_is_refused_by_name() -> None:
    comm = pc.distributed.Comm()
    comm.size = 3
    with pytest.raises(OptionError, match="2 example.*3 ranks"):
        comm.shard({"x": np.zeros((2, 4))})


def _two_ranks_without_mpi() -> pc.distributed.Comm:
    comm = pc.distributed.Comm()
    comm.size = 2  # refused before any collective: no MPI is needed to see it
    return comm


def test_noise_drawn_for_the_whole_batch_is_refused_on_several_ranks() -> None:
    g = pc.Graph("noisy")
    x = g.input("x", (3,))
    y = g.target("y", (), dtype="int64")
    h = pc.tanh(pc.linear(x, g.param("W", (3, 4)), g.param("b", (4,))))
    g.set_loss(pc.softmax_cross_entropy(pc.linear(h, g.param("V", (4, 2)), g.param("c", (2,))), y))
    prog = pc.compile(g, dtype="float64")
    batch = {"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=np.int64)}
    with pytest.raises(OptionError, match="init_noise"):
        prog.grads(prog.init_params(0), batch, "zil", comm=_two_ranks_without_mpi(), init_noise=0.1)


def test_dropout_is_refused_on_several_ranks_by_node() -> None:
    g = pc.Graph("dropped")
    x = g.input("x", (3,))
    seed = g.input("seed", (), dtype="int64")
    y = g.target("y", (), dtype="int64")
    h = pc.dropout(pc.linear(x, g.param("W", (3, 2)), g.param("b", (2,))), seed, p=0.5)
    g.set_loss(pc.softmax_cross_entropy(h, y))
    prog = pc.compile(g, dtype="float64")
    batch = {"x": np.zeros((4, 3)), "seed": np.arange(4), "y": np.zeros(4, dtype=np.int64)}
    opt = pc.optim.SGD(lr=0.1)
    with pytest.raises(OptionError, match="dropout"):
        prog.train_step(
            prog.init_params(0), batch, "bp", optimizer=opt, comm=_two_ranks_without_mpi()
        )
