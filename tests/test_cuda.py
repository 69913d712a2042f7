"""The runtime harness on a CUDA device (skipped without one): correct training stays silent and
bit-identical, the bugs are found, and no check makes a training step wait for the device."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_models import MODELS
from torchcheck import IndexCheckError, TorchcheckError, watch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def batches(shape, classes, count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, *shape, generator=generator).cuda(),
             torch.randint(0, classes, (16,), generator=generator).cuda()) for _ in range(count)]


def train(model, data, clear=True):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for inputs, labels in data:
        if clear:
            optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_clean_training_is_silent_and_bit_identical(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    build, shape, classes = MODELS[name]
    data = batches(shape, classes, 6)
    trained = []
    for harness in (False, True):
        torch.manual_seed(0)
        model = build().cuda()
        if harness:
            with watch(model) as run:
                train(model, data)
            assert run.findings == []
        else:
            train(model, data)
        trained.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*trained))


def test_bugs_are_found_on_cuda():
    torch.manual_seed(0)
    build, shape, classes = MODELS["bn_dropout_mlp"]
    model = build().cuda()
    data = batches(shape, classes, 4)
    with watch(model) as run:
        train(model, data, clear=False)
        with torch.no_grad():
            for inputs, _ in data:
                model(inputs)
    assert {f.name for f in run.findings} == {"missing-zero-grad", "eval-mode-missing"}


def test_non_finite_loss_is_found_without_waiting_on_each_step():
    torch.manual_seed(0)
    model = nn.Linear(8, 3).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches((8,), 3, 12)
    data[5] = (torch.full_like(data[5][0], float("nan")), data[5][1])
    with watch(model, optimizer) as run:
        for step, (inputs, labels) in enumerate(data):
            # step 0 samples the gradients (one deliberate synchronisation); the others never wait
            torch.cuda.set_sync_debug_mode("error" if step else "default")
            try:
                optimizer.zero_grad()
                F.cross_entropy(model(inputs), labels).backward()
                optimizer.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    [finding] = [f for f in run.findings if f.name == "non-finite-loss"]
    assert finding.step == 5 and finding.path.endswith("test_cuda.py")


def test_held_back_losses_are_read_when_the_buffer_fills_and_when_the_run_ends():
    model = nn.Linear(8, 3).cuda()
    inputs, labels = batches((8,), 3, 1)[0]
    with watch(model) as run:  # losses without any optimizer step: only a full buffer triggers a read
        for call in range(70):
            F.cross_entropy(model(inputs * (float("inf") if call == 3 else 1)), labels)
        assert [f.name for f in run.findings] == ["non-finite-loss"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TorchcheckError, match="non-finite-loss"):
        with watch(model, optimizer, mode="raise"):
            for call in range(3):
                optimizer.zero_grad()
                F.cross_entropy(model(inputs * (float("nan") if call == 1 else 1)), labels).backward()
                optimizer.step()


def test_index_errors_are_caught_before_the_device_assert():
    table = torch.randn(5, 2, device="cuda")
    with watch():
        with pytest.raises(IndexCheckError, match="device cuda"):
            torch.index_select(table, 0, torch.tensor([7], device="cuda"))
        with pytest.raises(IndexCheckError):
            F.embedding(torch.tensor([[1, 9]], device="cuda"), table)
        with pytest.raises(IndexCheckError):
            torch.gather(table, 1, torch.tensor([[0, 2]], device="cuda"))
    assert torch.index_select(table, 0, torch.tensor([1], device="cuda")).shape == (1, 2)  # context still usable


def test_values_reaching_nll_loss_and_kl_div_are_read_without_waiting_on_each_step():
    torch.manual_seed(0)
    model = nn.Linear(8, 3).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches((8,), 3, 20)
    with watch(model, optimizer, select=["nll-loss-without-log-softmax", "kl-div-input-not-log-probs"]) as run:
        for step, (inputs, labels) in enumerate(data):
            # the values held are read at steps 0 and 16 (one synchronisation each); the others never wait
            torch.cuda.set_sync_debug_mode("default" if step in (0, 16) else "error")
            try:
                optimizer.zero_grad()
                logits = model(inputs)
                loss = F.nll_loss(logits, labels)  # logits, not log-probabilities
                loss = loss + F.kl_div(F.log_softmax(logits, 1), F.softmax(logits.detach(), 1), reduction="batchmean")
                loss.backward()
                optimizer.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    [finding] = run.findings
    assert finding.name == "nll-loss-without-log-softmax" and finding.path.endswith("test_cuda.py")
