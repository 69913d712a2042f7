"""The runtime harness under the training loops of Lightning, Accelerate, the transformers Trainer
and Ignite: a buggy and a correct run each, a few steps on small synthetic data. Findings point at
the user's line, not at the framework's. Each framework's tests skip when it is not installed."""
import re
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from torchcheck.runtime import watch  # noqa: E402

SOURCE = Path(__file__).read_text().splitlines()


def marked(name: str, framework: str) -> set:
    """(check, this file, line) for each line marked `# finds: <name> [<framework>]`."""
    return {(name, Path(__file__).name, number) for number, line in enumerate(SOURCE, 1)
            if re.search(rf"#\s*finds:\s*{re.escape(name)} \[{framework}\]$", line)}


def found(run) -> set:
    return {(f.name, Path(f.path).name, f.line) for f in run.findings}


def data(samples: int = 32, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(samples, 8, generator=generator),
                         torch.randint(0, 2, (samples,), generator=generator))


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        yield


# -- Lightning ----------------------------------------------------------------------------------------
def lightning_modules():
    L = pytest.importorskip("lightning")

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net()

        def training_step(self, batch, index):
            inputs, labels = batch
            return F.cross_entropy(self.net(inputs), labels)

        def validation_step(self, batch, index):
            inputs, labels = batch
            self.log("val_loss", F.cross_entropy(self.net(inputs), labels))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class ManualWithoutClearing(Classifier):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, index):
            inputs, labels = batch
            optimizer = self.optimizers()
            self.manual_backward(F.cross_entropy(self.net(inputs), labels))
            optimizer.step()  # finds: missing-zero-grad [lightning]

    class ManualAccumulationUnscaled(Classifier):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, index):
            inputs, labels = batch
            optimizer = self.optimizers()
            loss = F.cross_entropy(self.net(inputs), labels)  # finds: grad-accumulation-unscaled [lightning]
            self.manual_backward(loss)
            if (index + 1) % 2 == 0:
                optimizer.step()
                optimizer.zero_grad()

    def fit(module, **options):
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=6, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, **options)
        with watch() as run:
            trainer.fit(module, DataLoader(data(), batch_size=4), DataLoader(data(16, 1), batch_size=4))
        return run

    return Classifier, ManualWithoutClearing, ManualAccumulationUnscaled, fit


def test_lightning_manual_optimization_without_clearing():
    _, manual, _, fit = lightning_modules()
    assert found(fit(manual())) == marked("missing-zero-grad", "lightning")


def test_lightning_manual_accumulation_without_scaling():
    _, _, manual, fit = lightning_modules()
    assert found(fit(manual())) == marked("grad-accumulation-unscaled", "lightning")


def test_lightning_accumulation_clipping_and_validation_are_clean():
    """`accumulate_grad_batches` divides the loss; validation switches to eval mode and back."""
    classifier, _, _, fit = lightning_modules()
    assert found(fit(classifier(), accumulate_grad_batches=2, gradient_clip_val=1.0, val_check_interval=2)) == set()


# -- Accelerate ---------------------------------------------------------------------------------------
def accelerate_loop(clear: bool, scale: bool = True, clip: bool = True):
    accelerate = pytest.importorskip("accelerate")
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=2 if clear else 1)
    model = net()
    model, optimizer, loader = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                                   DataLoader(data(), batch_size=4))
    with watch() as run:
        for inputs, labels in loader:
            with accelerator.accumulate(model):
                loss = F.cross_entropy(model(inputs), labels)  # finds: grad-accumulation-unscaled [accelerate]
                if scale:
                    accelerator.backward(loss)
                else:
                    loss.backward()
                if clear and clip:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()  # finds: missing-zero-grad [accelerate]
                if clear:
                    optimizer.zero_grad()
    return run


def test_accelerate_loop_without_clearing():
    assert found(accelerate_loop(clear=False)) == marked("missing-zero-grad", "accelerate")


def test_accelerate_accumulation_and_clipping_are_clean():
    """`accelerator.backward` divides the loss by the accumulation steps."""
    assert found(accelerate_loop(clear=True)) == set()


def test_accelerate_accumulation_bypassing_accelerator_backward():
    run = accelerate_loop(clear=True, scale=False, clip=False)
    assert found(run) == marked("grad-accumulation-unscaled", "accelerate")


# -- transformers Trainer -----------------------------------------------------------------------------
class Records(Dataset):
    def __init__(self, samples: int, seed: int):
        self.data = data(samples, seed)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        inputs, labels = self.data[index]
        return {"inputs": inputs, "labels": labels}


class DropoutModel(nn.Module):
    def __init__(self, follow_mode: bool):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.follow_mode = follow_mode

    def forward(self, inputs, labels=None):
        hidden = self.body(inputs)
        if self.follow_mode:
            hidden = F.dropout(hidden, 0.2, training=self.training)
        else:
            hidden = F.dropout(hidden, 0.2)  # finds: functional-dropout-training [transformers]
        logits = self.head(hidden)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def transformers_train(model, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=2, save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    with watch() as run:
        transformers.Trainer(model=model, args=args, train_dataset=Records(32, 0), eval_dataset=Records(16, 1)).train()
    return run


def test_transformers_trainer_evaluating_a_model_whose_dropout_ignores_eval_mode(tmp_path):
    run = transformers_train(DropoutModel(follow_mode=False), tmp_path)
    assert found(run) == marked("functional-dropout-training", "transformers")


def test_transformers_trainer_with_accumulation_and_evaluation_is_clean(tmp_path):
    assert found(transformers_train(DropoutModel(follow_mode=True), tmp_path)) == set()


# -- Ignite -------------------------------------------------------------------------------------------
def test_ignite_engine_whose_step_never_clears():
    engine = pytest.importorskip("ignite.engine")
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine, batch):
        model.train()
        inputs, labels = batch
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()  # finds: missing-zero-grad [ignite]

    with watch() as run:
        engine.Engine(step).run(DataLoader(data(), batch_size=4), max_epochs=1)
    assert found(run) == marked("missing-zero-grad", "ignite")


def test_ignite_supervised_trainer_with_accumulation_and_evaluator_is_clean():
    engine = pytest.importorskip("ignite.engine")
    metrics = pytest.importorskip("ignite.metrics")
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = engine.create_supervised_trainer(model, optimizer, F.cross_entropy, gradient_accumulation_steps=2)
    evaluator = engine.create_supervised_evaluator(model, metrics={"accuracy": metrics.Accuracy()})
    trainer.add_event_handler(engine.Events.ITERATION_COMPLETED(every=2),
                              lambda: evaluator.run(DataLoader(data(16, 1), batch_size=4)))
    with watch() as run:
        trainer.run(DataLoader(data(), batch_size=4), max_epochs=2)
    assert found(run) == set()
