"""The runtime harness in jobs of several processes (gloo on CPU): every rank is checked, rank 0
writes one report merging all ranks, DDP and FSDP training loops are told apart correctly, and a
rank with no process group to merge through reports alone."""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import torch.nn.functional as F  # noqa: E402

from torchcheck.runtime import distributed, watch  # noqa: E402
from torchcheck.types import Finding  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"#\s*expect:\s*([a-z0-9-]+)(?:\s+ranks=([\d,]+))?")

TRAIN = textwrap.dedent("""
    import torch, torch.distributed as dist, torch.nn as nn
    import torch.nn.functional as F
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)


    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(8, 16)
            self.unused = nn.Linear(16, 16)
            self.last = nn.Linear(16, 2)

        def forward(self, x):
            return self.last(torch.relu(self.first(x)))


    def batches(count, seed):
        generator = torch.Generator().manual_seed(seed * 10 + rank)
        return [(torch.randn(8, 8, generator=generator), torch.randint(0, 2, (8,), generator=generator))
                for _ in range(count)]


    def ddp(module=None, **kwargs):
        net = DDP(module or nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2)), **kwargs)
        return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


    net, optimizer = ddp()
    for inputs, labels in batches(4, 0):
        F.cross_entropy(net(inputs), labels).backward()
        optimizer.step()  # expect: missing-zero-grad

    net, optimizer = ddp()
    data = batches(8, 1)
    for i in range(0, len(data), 2):
        optimizer.zero_grad()
        with net.no_sync():
            F.cross_entropy(net(data[i][0]), data[i][1]).backward()
        F.cross_entropy(net(data[i + 1][0]), data[i + 1][1]).backward()
        optimizer.step()

    model, optimizer = ddp(TwoBranches(), find_unused_parameters=True, gradient_as_bucket_view=True)
    for inputs, labels in batches(4, 2):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    sharded = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    for layer in (sharded[0], sharded[2], sharded):
        fully_shard(layer)
    adam = torch.optim.AdamW(sharded.parameters(), lr=0.01)
    for inputs, labels in batches(4, 3):
        F.cross_entropy(sharded(inputs), labels).backward()
        adam.step()  # expect: missing-zero-grad

    with torch.no_grad():
        for inputs, _ in batches(2, 4):
            net(inputs)  # expect: eval-mode-missing
    if rank == 1:
        F.interpolate(torch.rand(3, 32, 32), size=16)  # expect: interpolate-3d-input ranks=1
    dist.destroy_process_group()
""")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _expected(source: str) -> set:
    found = set()
    for number, line in enumerate(source.splitlines(), 1):
        match = MARKER.search(line)
        if match:
            ranks = tuple(int(r) for r in match.group(2).split(",")) if match.group(2) else (0, 1)
            found.add((match.group(1), number, ranks))
    return found


def test_torchrun_checks_every_rank_and_rank_0_writes_one_merged_report(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "torchcheck", "run", "--format", "json", "--output", "r.json", "train.py"],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode != 0, "rank 0 exits 1 on findings"
    assert 'train.py", line' not in proc.stderr, proc.stderr[-3000:]  # the script itself ran through
    findings = json.loads((tmp_path / "r.json").read_text())["findings"]
    assert {(f["name"], f["line"], tuple(f["ranks"])) for f in findings} == _expected(TRAIN), proc.stderr[-3000:]
    assert [f["module_path"] for f in findings if f["name"] == "eval-mode-missing"] == ["module.1"]
    assert not list(tmp_path.glob("r.rank*.json")), "the ranks merged: no per-rank reports"


WATCH = textwrap.dedent("""
    import json, os, sys
    import torch, torch.distributed as dist, torch.nn as nn
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP
    import torchcheck

    dist.init_process_group("gloo")  # rank 0 serves the store: no torchrun agent
    rank, out = dist.get_rank(), sys.argv[1]
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torchcheck.watch(model, optimizer) as run:
        for _ in range(3):
            F.cross_entropy(model(torch.randn(8, 8)), torch.randint(0, 2, (8,))).backward()
            optimizer.step()
    gathered = run.gather()
    with open(os.path.join(out, f"gathered{rank}.json"), "w") as f:
        json.dump(None if gathered is None else [g.to_dict() for g in gathered], f)
    with torchcheck.watch() as later:
        if rank == 1:
            F.interpolate(torch.rand(3, 32, 32), size=16)
    dist.destroy_process_group()  # gone before the report: the run still reaches the other rank
    later.write_report(os.path.join(out, "r.json"), "json")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_in_each_process_gathers_on_rank_0(tmp_path):
    script = tmp_path / "two_processes.py"
    script.write_text(WATCH)
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    workers = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], env={**env, "RANK": str(rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    [finding] = json.loads((tmp_path / "gathered0.json").read_text())
    assert finding["name"] == "missing-zero-grad" and finding["ranks"] == [0, 1]
    assert json.loads((tmp_path / "gathered1.json").read_text()) is None
    [late] = json.loads((tmp_path / "r.json").read_text())["findings"]
    assert late["name"] == "interpolate-3d-input" and late["ranks"] == [1]
    assert not list(tmp_path.glob("r.rank*.json"))


# -- in one process: merging, the exchange through a store, and reporting alone ---------------------
def _finding(line, rank, step=3, count=1, message="m"):
    return Finding("TC504", "interpolate-3d-input", message, "train.py", line, 1, line, 2, step=step, count=count,
                   ranks=(rank,))


def test_merge_keeps_one_finding_per_place_with_its_ranks():
    merged = distributed.merge([_finding(5, 1, step=4, count=2, message="from 1"), _finding(5, 0, count=3,
                                message="from 0"), _finding(9, 1)])
    assert [(f.line, f.ranks, f.step, f.count, f.message) for f in merged] == [
        (5, (0, 1), 3, 5, "from 0"), (9, (1,), 3, 1, "m")]


def test_exchange_through_the_store(monkeypatch):
    store = dist.TCPStore("127.0.0.1", 0, 3, is_master=True, wait_for_workers=False)
    group = lambda rank: distributed.Group(rank, 3, store)  # noqa: E731
    monkeypatch.setattr(distributed, "_gathers", 0)
    assert distributed.gather([_finding(5, 1)], group(1)).findings is None  # handed over, goes on
    monkeypatch.setattr(distributed, "_gathers", 0)
    gathered = distributed.gather([_finding(5, 0)], group(0), timeout=0.2)  # rank 2 never hands over
    assert [(f.line, f.ranks) for f in gathered.findings] == [(5, (0, 1))]
    assert gathered.missing == (2,) and "rank 2 did not reach rank 0" in gathered.notes()[0]
    monkeypatch.setattr(distributed, "_gathers", 0)
    failed = distributed.gather([_finding(7, 2)], group(2), failed=True)  # hands over and reports itself
    assert failed.alone == "failed" and [f.line for f in failed.findings] == [7]


def test_a_rank_with_no_process_group_writes_its_own_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with watch() as run:
        F.interpolate(torch.rand(3, 32, 32), size=16)
    assert run.findings[0].ranks == (1,)
    assert run.write_report(tmp_path / "r.json", "json") == run.findings
    assert not (tmp_path / "r.json").exists()
    [finding] = json.loads((tmp_path / "r.rank1.json").read_text())["findings"]
    assert finding["ranks"] == [1]
    assert "rank 1: the process group was gone" in capsys.readouterr().err
