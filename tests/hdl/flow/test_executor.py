"""hdl.flow.executor: the flow's Yosys and simulation jobs on a local Dask cluster give the
results of the local run, each netlist synthesised once; bad schedulers are one-line errors."""

import json
import os
import time

import pytest

from bench import networks
from hdl import build as cli
from hdl.cli import EXIT_BAD_INPUT
from hdl.flow import build, synth
from hdl.flow.executor import (ClusterError, DaskExecutor, LocalExecutor, check_scheduler,
                               make_executor)
from sim.random_model import LayerPlan, build_model

#: Two rows whose engines and whole tops are the same netlists (both boards are xc7 with
#: 64-bit TDATA): the second row's netlists must all come from the cache.
SWEEP = (("pynq-z2", 100.0), ("zc706", 200.0))


def micro():
    """Two small FC stages: 4-bit input, binary weights, scores out."""
    plans = [LayerPlan(op="fc", out=8), LayerPlan(op="fc", out=2, act_bits=None)]
    return build_model(plans, input_shape=(2, 2, 1), input_bits=4, seed=3, name="micro")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                      dashboard_address=None) as c:
        yield c


def _sweep(cache, executor):
    mp = pytest.MonkeyPatch()
    mp.setenv("QNN_SYNTH_CACHE", str(cache))
    before = synth.yosys_runs           # the in-process workers' runs count here too
    try:
        rows = [networks.run_row("micro", board, clock, model=micro(), target_cycles=8,
                                 cmd="pytest", executor=executor) for board, clock in SWEEP]
    finally:
        mp.undo()
    for row in rows:
        row.pop("toolflow_s")           # wall time: the one figure allowed to differ
    return rows, synth.yosys_runs - before


@pytest.fixture(scope="module")
def sweeps(cluster, tmp_path_factory):
    local_cache = tmp_path_factory.mktemp("local_cache")
    cluster_cache = tmp_path_factory.mktemp("cluster_cache")
    local = _sweep(local_cache, None)
    with DaskExecutor(cluster.scheduler_address) as ex:
        assert ex.remote and ex.workers == 2
        remote = _sweep(cluster_cache, ex)
        again = _sweep(cluster_cache, ex)
    return {"local": local, "cluster": remote, "again": again,
            "caches": (local_cache, cluster_cache)}


def test_cluster_sweep_equals_local_run(sweeps):
    (local, local_runs), (remote, remote_runs) = sweeps["local"], sweeps["cluster"]
    assert remote == local
    first, second = local
    assert first["lut"] > 0 and first["cycles_measured"] == first["cycles_per_frame"] == 8
    assert second["stage_lut"] == first["stage_lut"] and second["synth_cached_stages"] == 2
    # Each distinct netlist (two stages and the whole top, the same on both boards: 64-bit
    # TDATA) synthesised once, here and on the cluster.
    assert local_runs == remote_runs == len(first["stage_lut"]) + 1 == 3


def test_cluster_writes_the_cache_a_local_run_reads(sweeps):
    local_cache, cluster_cache = sweeps["caches"]
    entries = sorted(p.name for p in local_cache.glob("*.json"))
    assert len(entries) == 3 and sorted(p.name for p in cluster_cache.glob("*.json")) == entries
    for name in entries:
        assert json.loads((cluster_cache / name).read_text()) == json.loads((local_cache / name).read_text())
    rows, runs = sweeps["again"]
    assert runs == 0 and [r["synth_cached_stages"] for r in rows] == [2, 2]
    assert [r["lut"] for r in rows] == [r["lut"] for r in sweeps["local"][0]]


PARITY = "module parity(input [5:0] a, output p); assign p = ^a; endmodule\n"


def test_one_netlist_one_job(cluster, tmp_path):
    """Two labels with one netlist: a single Yosys run on the cluster, the other a hit."""
    before = synth.yosys_runs
    with DaskExecutor(cluster.scheduler_address) as ex:
        got = synth.synthesize_many({"a": (PARITY, "parity"), "b": (PARITY, "parity")}, "xc7",
                                    executor=ex, cache_dir=tmp_path)
    assert synth.yosys_runs == before + 1
    assert got["a"].lut == got["b"].lut == 1 and got["a"].logic_levels == 1   # one LUT6
    assert (got["a"].cached, got["b"].cached) == (False, True)
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_hdl_build_on_the_cluster(cluster, sweeps, tmp_path, monkeypatch):
    """``--scheduler``: the layers and the whole accelerator come from the cache the
    cluster sweep wrote (``bench.networks`` synthesises the same netlists)."""
    from hdl import ir
    monkeypatch.setenv("QNN_SYNTH_CACHE", str(sweeps["caches"][1]))
    model = ir.save(micro(), tmp_path / "micro")
    row = sweeps["local"][0][0]
    before = synth.yosys_runs
    code = cli.main(["pynq-z2", "--model", str(model), "--folding", json.dumps(row["folding"]),
                     "--out", str(tmp_path / "out"), "--scheduler", cluster.scheduler_address])
    assert code == 0
    assert synth.yosys_runs == before
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {layer["name"]: layer["lut"] for layer in report["layers"]} == row["stage_lut"]
    assert report["totals"]["lut"] > 0 and report["cycles_per_frame"] == 8


TWO_PARTS = PARITY + """module outer(input clk, input [5:0] a, input [5:0] b, output reg y);
  wire p, q;
  parity u(.a(a), .p(p));
  \\sub.parity v(.a(b), .p(q));
  always @(posedge clk) y <= p & q;
endmodule
module \\sub.parity (input [5:0] a, output p); assign p = ~^a; endmodule
"""


def test_parts_on_the_cluster_equal_the_local_run(cluster, tmp_path):
    """synthesize_parts through the cluster: a job per part (dotted names included), the
    same figures as on this machine, stored in the client's cache."""
    local = synth.synthesize_parts(TWO_PARTS, "outer", "xc7", ["parity", "sub.parity"],
                                   cache_dir=tmp_path / "local")
    before = synth.yosys_runs
    with DaskExecutor(cluster.scheduler_address) as ex:
        remote = synth.synthesize_parts(TWO_PARTS, "outer", "xc7", ["parity", "sub.parity"],
                                        executor=ex, cache_dir=tmp_path / "cluster")
    assert synth.yosys_runs == before + 3            # in-process workers count here too
    assert list(remote) == ["outer", "parity", "sub.parity"]
    assert {k: r.to_json() for k, r in remote.items()} == {k: r.to_json() for k, r in local.items()}
    assert remote["outer"].ff == 1 and remote["sub.parity"].lut == 1
    assert sorted(p.name for p in (tmp_path / "cluster").glob("*.json")) == \
        sorted(p.name for p in (tmp_path / "local").glob("*.json"))


def test_worker_with_another_flow_is_refused():
    with pytest.raises(RuntimeError, match="install the same qnn-fpga on every worker"):
        synth.remote_job(PARITY, "parity", (), "xc7", 60, "0" * 16)


@pytest.mark.parametrize("address", ["localhost:8786", "tcp://host", "http://h:1", "tcp://h:0",
                                     "tcp://h:99999", "tcp://a b:1", ""])
def test_bad_scheduler_is_a_value_error(address):
    with pytest.raises(ValueError, match=r"scheduler must be tcp://HOST:PORT"):
        check_scheduler(address)
    assert check_scheduler("tcp://node-3.cluster:8786") == "tcp://node-3.cluster:8786"
    assert check_scheduler("tls://[::1]:8786") == "tls://[::1]:8786"


def test_unreachable_scheduler_is_one_error():
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=0.5)


def test_cli_scheduler_errors_are_one_line(tmp_path, capsys):
    code = cli.main(["pynq-z2", "--scheduler", "nowhere", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and err == ["error: --scheduler must be tcp://HOST:PORT (or tls://HOST:PORT), "
                                 "not 'nowhere'"]
    code = cli.main(["pynq-z2", "--no-synth", "--scheduler", "tcp://h:1", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and err == ["error: --scheduler runs the synthesis jobs: drop --no-synth"]
    assert networks.main(["--quick", "--scheduler", "h:1"]) == EXIT_BAD_INPUT
    assert "--scheduler must be tcp://HOST:PORT" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_lost_job_is_a_cluster_error(cluster):
    with DaskExecutor(cluster.scheduler_address) as ex:
        job = ex.submit(time.sleep, 0.5)
        ex.client.cancel([job._future])
        with pytest.raises(ClusterError, match=r"tcp://127.0.0.1:\d+ lost job"):
            job.result()
        assert ex.submit(divmod, 7, 2).result() == (3, 1)


def test_local_executor():
    with make_executor(None, workers=2) as ex:
        assert isinstance(ex, LocalExecutor) and not ex.remote
        assert sorted(ex.map(pow, [(2, 3), (3, 2), (5, 0)])) == [(0, 8), (1, 9), (2, 1)]
        with pytest.raises(ZeroDivisionError):
            dict(ex.map(divmod, [(1, 1), (1, 0)]))
        assert ex.submit(divmod, 7, 2).result() == (3, 1)
    with pytest.raises(ValueError, match="workers must be a positive int, not 0"):
        LocalExecutor(0)


@pytest.mark.slow
def test_max_fit_on_the_cluster_equals_local(cluster, tmp_path, monkeypatch):
    """``--max-fit``: the binary search's syntheses on the cluster choose what they choose here."""
    from hdl import ir
    model = ir.save(micro(), tmp_path / "micro")
    reports = []
    for where, scheduler in (("local", None), ("cluster", cluster.scheduler_address)):
        monkeypatch.setenv("QNN_SYNTH_CACHE", str(tmp_path / f"cache_{where}"))
        build.build("pynq-z2", model_path=model, max_fit=True, out_dir=tmp_path / where,
                    quiet=True, scheduler=scheduler)
        data = json.loads((tmp_path / where / "report.json").read_text())
        reports.append((data, (tmp_path / where / "folding.json").read_text()))
    assert reports[0] == reports[1]
    assert os.listdir(tmp_path / "cache_local") and \
        sorted(os.listdir(tmp_path / "cache_local")) == sorted(os.listdir(tmp_path / "cache_cluster"))
