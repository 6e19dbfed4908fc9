"""Quality evaluation runs on one intra-op torch thread whatever the process's setting (the same
numbers on any machine): PTQ accuracy, sensitivity measurement and QAT fine-tuning; the
process's thread count is restored afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwq.quant.finetune import finetune
from hwq.quant.ptq import PTQAccuracy
from hwq.quant.sensitivity import measure_sensitivity


class ThreadProbe(nn.Module):
    """A small CNN that records the intra-op thread count of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    assert torch.get_num_threads() == 2  # hwq restored the process's setting
    torch.set_num_threads(before)


def test_quality_evaluation_runs_on_one_thread(two_threads):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 6, 6, generator=gen), torch.randint(0, 3, (24,), generator=gen)
    batches = [(x[:12], y[:12]), (x[12:], y[12:])]
    torch.manual_seed(0)
    net = ThreadProbe().eval()
    evaluator = PTQAccuracy(net, batches, (x, y), calib_batches=2)
    probe = evaluator.qmodel
    probe.seen.clear()
    evaluator([(4, 4), (8, 8)])
    measure_sensitivity(evaluator, [(4, 4), (8, 8)])
    assert probe.seen and set(probe.seen) == {1}
    net.seen.clear()
    record, student = finetune(net, [(4, 4), (8, 8)], batches, batches, epochs=1, calib=batches,
                               return_model=True)
    assert net.seen and set(net.seen) == {1}  # the teacher's, layer order and FP32 accuracy
    assert len(student.seen) > len(net.seen) and set(student.seen) == {1}
    assert torch.get_num_threads() == 2
