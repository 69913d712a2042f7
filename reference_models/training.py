"""Synthetic data and the correct training/evaluation loops for the reference models.

The data is learnable: each class has its own fixed random prototype, and samples are noisy copies
of it, so a model trained for a few steps really improves."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_dataset(shape, classes, samples, seed=0, noise=0.5):
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn((classes, *shape), generator=generator)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    inputs = prototypes[labels] + noise * torch.randn((samples, *shape), generator=generator)
    return TensorDataset(inputs, labels)


def make_loaders(shape, classes, train_samples=128, val_samples=64, batch_size=16, seed=0):
    train_set = make_dataset(shape, classes, train_samples, seed)
    val_set = make_dataset(shape, classes, val_samples, seed + 1)
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator),
            DataLoader(val_set, batch_size=batch_size))


def train(model, loader, steps=8, lr=0.05, epochs=1):
    """The correct loop: train mode, clear, forward, loss, backward, step, `.item()` for logging."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    step = 0
    for _epoch in range(epochs):
        model.train()
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step >= steps:
                return losses
    return losses


@torch.no_grad()
def evaluate(model, loader):
    """The correct evaluation: eval mode, no grad; returns accuracy."""
    model.eval()
    correct = total = 0
    for inputs, labels in loader:
        correct += (model(inputs).argmax(1) == labels).sum().item()
        total += labels.numel()
    model.train()
    return correct / max(total, 1)


def main(argv=None):
    import argparse

    from reference_models.models import MODELS

    parser = argparse.ArgumentParser(description="Train a reference model on synthetic data.")
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    build, shape, classes = MODELS[args.model]
    torch.manual_seed(0)
    model = build()
    train_loader, val_loader = make_loaders(shape, classes)
    losses = train(model, train_loader, steps=args.steps)
    print(f"{args.model}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, accuracy {evaluate(model, val_loader):.2f}")


if __name__ == "__main__":
    main()
