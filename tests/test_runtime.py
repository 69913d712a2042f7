"""The runtime harness on real training: each check's bug and its correct look-alikes, the
reference models (clean, and bit-identical with and without the harness), hooks always removed,
nesting, modes, and `torchcheck run`."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reference_models import MODELS, evaluate, make_loaders, train  # noqa: E402
from torchcheck.runtime import IndexCheckError, TorchcheckError, watch  # noqa: E402
from torchcheck.runtime.runner import run_script  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "fixtures" / "runtime"
SCRIPTS = sorted(RUNTIME.glob("*.py"))
MARKER = re.compile(r"#\s*expect:\s*([a-z0-9-]+(?:,\s*[a-z0-9-]+)*)")


def expected_findings(path: Path) -> set[tuple[str, int]]:
    """(check, line) for each check named by a line's `# expect: <check>[, <check>...]`."""
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = MARKER.search(line)
        if match:
            found.update((name.strip(), number) for name in match.group(1).split(","))
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_runtime_fixture(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, findings = run_script(script, [])
    assert {(f.name, f.line) for f in findings} == expected_findings(script)
    assert all(Path(f.path).name == script.name for f in findings)
    if script.stem.endswith("_ok"):
        assert not expected_findings(script)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_model_clean_and_unchanged_by_the_harness(name):
    build, shape, classes = MODELS[name]
    steps = 2 if name == "resnet18" else 4
    results = []
    for harness in (False, True):
        torch.manual_seed(0)
        model = build()
        train_loader, val_loader = make_loaders(shape, classes, train_samples=64, val_samples=32)
        torch.manual_seed(1)
        if harness:
            with watch(model) as run:
                losses = train(model, train_loader, steps=steps)
                accuracy = evaluate(model, val_loader)
            assert run.findings == []
        else:
            losses = train(model, train_loader, steps=steps)
            accuracy = evaluate(model, val_loader)
        results.append((_state(model), losses, accuracy))
    (state_a, losses_a, acc_a), (state_b, losses_b, acc_b) = results
    assert losses_a == losses_b and acc_a == acc_b
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), "the harness changed training results"


def test_reference_model_learns():
    build, shape, classes = MODELS["bn_dropout_mlp"]
    torch.manual_seed(0)
    model = build()
    train_loader, val_loader = make_loaders(shape, classes)
    losses = train(model, train_loader, steps=16, epochs=2)
    assert losses[-1] < losses[0]


def _global_state():
    from torch.optim import optimizer as optimizer_hooks
    from torch.utils.data import dataloader

    return (F.cross_entropy, F.dropout, F.batch_norm, F.interpolate, torch.index_select,
            torch.Tensor.__dict__.get("__add__"), nn.Module.zero_grad, torch.optim.Optimizer.zero_grad,
            nn.Module.train, torch.Tensor.backward, dataloader._BaseDataLoaderIter.__next__, tuple(sys.meta_path),
            len(optimizer_hooks._global_optimizer_pre_hooks), len(optimizer_hooks._global_optimizer_post_hooks))


def test_everything_is_removed_even_when_the_loop_raises():
    before = _global_state()
    model = nn.Linear(4, 2)
    with pytest.raises(ZeroDivisionError):
        with watch(model):
            F.cross_entropy(model(torch.randn(3, 4)), torch.tensor([0, 1, 0]))
            raise ZeroDivisionError("the training loop failed")
    assert _global_state() == before
    with watch():
        pass
    assert _global_state() == before


def test_nesting_and_reentry():
    outer = watch()
    with outer:
        with watch() as inner:
            image = torch.rand(3, 32, 32)
            F.interpolate(image, size=16)
        F.interpolate(image, size=8)
    assert [f.name for f in inner.findings] == ["interpolate-3d-input"]
    assert len(outer.findings) == 2
    with pytest.raises(RuntimeError, match="already active"):
        with outer:
            with outer:
                pass
    with outer:  # re-entering after exit collects into the same run
        F.interpolate(torch.rand(3, 32, 32), size=8)
    assert len(outer.findings) == 3


def test_modes_warn_and_raise():
    with pytest.warns(RuntimeWarning, match="interpolate-3d-input"):
        with watch(mode="warn"):
            F.interpolate(torch.rand(3, 32, 32), size=16)
    with pytest.raises(TorchcheckError, match="interpolate-3d-input"):
        with watch(mode="raise"):
            F.interpolate(torch.rand(3, 32, 32), size=16)
    with pytest.raises(ValueError):
        watch(mode="loud")


def test_select_and_ignore():
    with watch(ignore=["TC504"]) as run:
        F.interpolate(torch.rand(3, 32, 32), size=16)
    assert run.findings == []
    with watch(select=["interpolate-3d-input"]) as run:
        F.interpolate(torch.rand(3, 32, 32), size=16)
    assert len(run.findings) == 1


def test_index_check_names_sizes_and_line():
    with watch() as run:
        with pytest.raises(IndexCheckError, match=r"index 5 is out of bounds for dimension 0 of size 5"):
            torch.index_select(torch.randn(5, 2), 0, torch.tensor([0, 5]))
        with pytest.raises(IndexCheckError, match="dtype torch.float32"):
            torch.randn(5, 2).index_select(0, torch.tensor([0.0]))
    assert {f.name for f in run.findings} == {"index-select-out-of-bounds"}
    assert all(f.path.endswith("test_runtime.py") for f in run.findings)


def test_non_finite_loss_names_the_loss_and_its_first_step():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, optimizer) as run:
        for step in range(5):
            optimizer.zero_grad()
            inputs = torch.randn(8, 4) * (float("nan") if step == 3 else 1)
            F.cross_entropy(model(inputs), torch.randint(0, 2, (8,))).backward()
            optimizer.step()
    [finding] = run.findings
    assert finding.step == 3 and "`cross_entropy` returned NaN or Inf at step 3" in finding.message


def test_findings_are_counted_once():
    with watch() as run:
        for _ in range(5):
            F.interpolate(torch.rand(3, 32, 32), size=16)
    assert len(run.findings) == 1 and run.findings[0].count == 5


SCRIPT = """
import sys
import torch
import torch.nn.functional as F
print("argv", sys.argv[1:], "name", __name__)
F.interpolate(torch.rand(3, 32, 32), size=16)
if "--fail" in sys.argv:
    raise RuntimeError("the script failed")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
"""


def _torchcheck(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torchcheck", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_run_command_behaves_like_python(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = _torchcheck("run", "--format", "json", "--output", "report.json", "train.py", "0", "--lr", "1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # findings
    assert "argv ['0', '--lr', '1'] name __main__" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(f["name"], f["path"], f["line"]) for f in report["findings"]] == [("interpolate-3d-input", "train.py", 6)]
    assert _torchcheck("run", "--exit-zero", "train.py", cwd=tmp_path).returncode == 0
    assert _torchcheck("run", "train.py", "3", cwd=tmp_path).returncode == 3  # the script's own code wins
    failed = _torchcheck("run", "--format", "json", "--output", "failed.json", "train.py", "--fail", cwd=tmp_path)
    assert failed.returncode == 1 and "the script failed" in failed.stderr
    assert json.loads((tmp_path / "failed.json").read_text())["findings"], "the report is written when the script raises"
    assert _torchcheck("run", "missing.py", cwd=tmp_path).returncode == 2


def test_run_module_behaves_like_python_m(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(SCRIPT.replace('sys.argv[1:], "name", __name__',
                                                     'sys.argv, "name", __name__, "spec", __spec__.name'))
    proc = _torchcheck("run", "--format", "json", "--output", "report.json", "-m", "pkg.train", "0", "--lr", "1",
                       cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"argv [{str(package / 'train.py')!r}, '0', '--lr', '1'] name __main__ spec pkg.train" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(f["name"], f["path"], f["line"]) for f in report["findings"]] == [
        ("interpolate-3d-input", "pkg/train.py", 6)]
    missing = _torchcheck("run", "-m", "pkg.missing", cwd=tmp_path)
    assert missing.returncode == 2 and "no module named `pkg.missing`" in missing.stderr
    assert _torchcheck("run", "-m", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("script, expected", [
    ("mnist_mlp_seed.py", {"loss-accumulated-without-item"}),
    ("lenet_buggy.py", {"softmax-before-cross-entropy", "missing-zero-grad"}),
    ("lenet_clean.py", set()),
    ("cifar10_sequential_clean.py", set()),
], ids=lambda value: value if isinstance(value, str) else None)
def test_seed_training_scripts_under_torchcheck_run(script, expected, monkeypatch):
    """The seeds' own training scripts (fixtures/static, on synthetic data), run unmodified."""
    monkeypatch.chdir(ROOT)
    code, findings = run_script(ROOT / "fixtures" / "static" / script, [])
    assert code == 0
    assert {f.name for f in findings} == expected


# -- one check per module ---------------------------------------------------------------------------
def test_each_runtime_check_is_one_module_named_after_its_catalog_entry():
    import ast

    from torchcheck.registry import catalog
    from torchcheck.runtime.checks import all_checks
    from torchcheck.runtime.events import SOURCES

    checks = all_checks()
    assert set(checks) == {rule.name for rule in catalog() if rule.runtime_check}
    for name, check in checks.items():
        module = sys.modules[check.__module__]
        assert Path(module.__file__).stem == name.replace("-", "_")
        assert check.events() and set(check.events()) <= set(SOURCES), name
        imported = {node.module for node in ast.walk(ast.parse(Path(module.__file__).read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.startswith("torchcheck.runtime.checks.")}, f"{name} imports another check"


def test_only_what_the_selected_checks_need_is_installed():
    originals = (F.cross_entropy, F.dropout, F.batch_norm, F.interpolate, F.softmax, torch.index_select,
                 torch.Tensor.__add__, nn.Module.train)
    with watch(select=["missing-zero-grad"]):
        assert (F.cross_entropy, F.dropout, F.batch_norm, F.interpolate, F.softmax, torch.index_select,
                torch.Tensor.__add__, nn.Module.train) == originals
        with watch(select=["interpolate-3d-input"]) as inner:  # a nested run adds its own checks
            assert F.interpolate is not originals[3] and F.cross_entropy is originals[0]
            F.interpolate(torch.rand(3, 32, 32), size=16)
    assert [f.name for f in inner.findings] == ["interpolate-3d-input"]
    assert F.interpolate is originals[3]


def test_sync_batch_norm_updating_statistics_in_validation(monkeypatch):
    """SyncBatchNorm across processes skips F.batch_norm for its synchronised kernel (CUDA only):
    that path is seen too. Here the kernel is stood in for by the plain batch norm."""
    import torch.nn.modules.batchnorm as batchnorm

    class Synchronised:
        @staticmethod
        def apply(input, weight, bias, running_mean, running_var, eps, momentum, process_group, world_size):
            return torch.batch_norm(input, weight, bias, running_mean, running_var, True, momentum, eps, False)

    class SyncedAcrossTwoRanks(nn.SyncBatchNorm):
        def forward(self, input):
            return batchnorm.sync_batch_norm.apply(input, self.weight, self.bias, self.running_mean,
                                                   self.running_var, self.eps, self.momentum, None, 2)

    monkeypatch.setattr(batchnorm, "sync_batch_norm", Synchronised)
    model = nn.Sequential(nn.Linear(4, 8), SyncedAcrossTwoRanks(8))
    with watch(model) as run:
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(6, 4))
    assert [(f.name, f.module_path) for f in run.findings] == [("eval-mode-missing", "1")]
    assert batchnorm.sync_batch_norm is Synchronised


# -- the runtime twins of the static rules: their edges ---------------------------------------------
def test_nll_loss_values_degenerate_inputs_stay_silent():
    targets = torch.tensor([0, 1, 0, 1])
    with watch(select=["nll-loss-without-log-softmax"]) as run:
        F.nll_loss(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))  # one class: log-probability 0
        F.nll_loss(torch.zeros(4, 3), targets)  # all zeros
        F.nll_loss(torch.log(torch.full((4, 2), 0.5) + 1e-6), targets)  # log(p + eps)
        F.nll_loss(F.log_softmax(torch.randn(4, 2, 5), dim=1), torch.zeros(4, 5, dtype=torch.long))
    assert run.findings == []


def test_nll_loss_probability_rows_over_many_classes_are_found_below_the_margin():
    with watch(select=["nll-loss-without-log-softmax"]) as run:
        F.nll_loss(torch.full((4, 5000), 1 / 5000), torch.tensor([0, 1, 2, 3]))
    [finding] = run.findings
    assert "probabilities" in finding.message and finding.path.endswith("test_runtime.py")


def test_kl_div_probability_target_with_log_target():
    log_probs = F.log_softmax(torch.randn(4, 3), dim=1)
    with watch(select=["kl-div-input-not-log-probs"]) as run:
        F.kl_div(log_probs, log_probs.exp(), reduction="batchmean", log_target=True)
        F.kl_div(log_probs, log_probs, reduction="batchmean", log_target=True)
    [finding] = run.findings
    assert "log_target=True" in finding.message


def _step(model, optimizer):
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(8, 20)), torch.randint(0, 4, (8,))).backward()
    optimizer.step()


def test_train_mode_not_restored_shows_where_eval_was_called():
    from reference_models import BNDropoutMLP

    torch.manual_seed(0)
    model = BNDropoutMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(select=["train-mode-not-restored"]) as run:
        model.eval()  # before any step: evaluating a baseline
        _step(model, optimizer)
        model.train()
        _step(model, optimizer)
        model.eval()
        model.head.train()  # part of the model trains: deliberate
        _step(model, optimizer)
        model.eval()
        eval_line = sys._getframe().f_lineno - 1
        _step(model, optimizer)
        _step(model, optimizer)
    [finding] = run.findings
    assert finding.count == 1 and "BatchNorm1d, Dropout" in finding.message
    assert [(r.message, r.line) for r in finding.related] == [("switched to eval mode here", eval_line)]


def test_grad_accumulation_skipped_steps_and_scaled_losses_are_silent():
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,))), batch_size=4)
    scaler = torch.amp.GradScaler("cpu")
    with watch(select=["grad-accumulation-unscaled"]) as run:
        for i, (inputs, labels) in enumerate(loader):  # one step skipped now and then: not accumulation
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            if i % 3:
                optimizer.step()
        for i, (inputs, labels) in enumerate(loader):  # GradScaler backpropagates a scaled tensor
            scaler.scale(F.cross_entropy(model(inputs), labels) / 2).backward()
            if i % 2:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
    assert run.findings == []


def test_images_made_by_torchvision_after_the_run_started_are_followed(tmp_path):
    """torchvision imported by the script, after `torchcheck run` installed the checks."""
    script = tmp_path / "resize.py"
    script.write_text("import sys\n"
                      "assert 'torchvision' not in sys.modules\n"
                      "import torch, torch.nn.functional as F\n"
                      "from torchvision.transforms.functional import to_tensor, to_pil_image\n"
                      "image = to_tensor(to_pil_image(torch.rand(3, 40, 40)))\n"
                      "F.interpolate(image, size=20, mode='linear')\n")
    proc = _torchcheck("run", "--select", "interpolate-3d-input", "--format", "json", "--output", "report.json",
                       "resize.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(f["name"], f["line"]) for f in report["findings"]] == [("interpolate-3d-input", 6)]


def test_interpolate_follows_pictures_through_normalize_but_not_spectrograms():
    transforms = pytest.importorskip("torchvision.transforms")
    import numpy as np

    to_tensor = transforms.ToTensor()
    normalize = transforms.Normalize([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    spectrogram = np.random.default_rng(0).random((64, 100, 1), dtype=np.float32)
    with watch(select=["interpolate-3d-input"]) as run:
        F.interpolate(normalize(to_tensor(pixels)), size=20, mode="linear")
        picture_line = sys._getframe().f_lineno - 1
        F.interpolate(to_tensor(spectrogram), size=50, mode="linear")  # (1, 64, 100): time resized, on purpose
        F.interpolate(normalize(torch.rand(3, 40, 40)), size=20, mode="linear")  # no picture behind it
    assert [f.line for f in run.findings] == [picture_line]
