"""The runtime harness: watch a real training loop and report what only running it can show.

    with torchcheck.watch(model, optimizer) as run:
        train(...)
    print(run.findings)

or, with no code change: `torchcheck run train.py --epochs 1`. Needs torch; the static linter
does not."""
from torchcheck.runtime.harness import IndexCheckError, Run, TorchcheckError, watch

__all__ = ["IndexCheckError", "Run", "TorchcheckError", "watch"]
