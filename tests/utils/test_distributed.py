"""The torchrun helpers: a single process stays plain; two gloo processes join, average gradients, name rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from cxrkd_monai.utils.distributed import init_distributed, is_rank0, local_device, wrap_ddp

# Run by each of two torchrun processes: rank r feeds x = r + 1 to y = w * x, so dy/dw is 1 on rank 0 and 2 on
# rank 1, and DistributedDataParallel leaves both with the mean, 1.5.
RANK_SCRIPT = """
import json, os, sys

import ignite.distributed as idist
import torch

from cxrkd_monai.utils.distributed import init_distributed, is_rank0, local_device, wrap_ddp

joined, joined_again = init_distributed(), init_distributed()
rank = int(os.environ["RANK"])
network = torch.nn.Linear(1, 1, bias=False)
torch.nn.init.ones_(network.weight)
model = wrap_ddp(network, local_device())
model(torch.tensor([[rank + 1.0]])).sum().backward()
report = {
    "joined": joined, "joined_again": joined_again, "is_rank0": is_rank0(), "wrapper": type(model).__name__,
    "gradient": network.weight.grad.item(), "ignite_world_size": idist.get_world_size(),
}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as handle:
    json.dump(report, handle)
"""


def test_without_torchrun_nothing_is_initialised(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() is False
    assert not dist.is_initialized()
    assert is_rank0()


def test_local_device_follows_local_rank_when_gpus_exist(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert local_device() == torch.device("cuda", 3)


def test_wrap_ddp_without_a_process_group_returns_the_network_itself():
    network = torch.nn.Linear(2, 1).double()
    assert wrap_ddp(network, "cpu") is network
    assert network.weight.device == torch.device("cpu") and network.weight.dtype == torch.float64


@pytest.mark.slow
def test_two_torchrun_processes_average_gradients_and_only_rank0_writes(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), str(tmp_path),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, report in enumerate(reports):
        assert report["joined"] is True and report["joined_again"] is True
        assert report["is_rank0"] is (rank == 0)
        assert report["wrapper"] == "DistributedDataParallel"
        assert report["gradient"] == pytest.approx(1.5, abs=1e-6)
        assert report["ignite_world_size"] == 2
