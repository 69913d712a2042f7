"""Runtime twin of `torchcheck/rules/kl_div_input_not_log_probs.py`: `kl_div` (so `nn.KLDivLoss`)
given an input with a value above 0, which log-probabilities never have; with
`log_target=False`, a target with a value below 0, which probabilities never have; with
`log_target=True`, a target above 0. A margin (`MARGIN`) leaves `log(p + eps)` alone.

The extreme values are read on the CPU at once; on an accelerator they are held on the device and
read together every `READ_EVERY` steps, when the buffer fills and when the run ends, so no step
waits for the device. Each line is read on its first `ALWAYS_READ` calls, then on every
`SAMPLE_EVERY`-th (what a line feeds `kl_div` does not change between calls), and reported once."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.device_reads import HeldValues
from torchcheck.runtime.events import arg
from torchcheck.runtime.harness import TorchcheckError

MARGIN = 1e-3
READ_EVERY = 16
ALWAYS_READ = 8
SAMPLE_EVERY = 16


class KlDivInputNotLogProbs(RuntimeCheck):
    name = "kl-div-input-not-log-probs"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.held = HeldValues()
        self.calls: dict = {}  # line -> kl_div calls seen there
        self.reported: set = set()

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if name != "kl_div" or not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor) \
                or not input.numel() or not target.numel() or input.is_complex() or target.is_complex():
            return
        where = locate()
        if where in self.reported:
            return
        calls = self.calls[where] = self.calls.get(where, 0) + 1
        if calls > ALWAYS_READ and calls % SAMPLE_EVERY:
            return
        log_target = bool(arg(args, kwargs, 5, "log_target"))
        step = self.context.iteration
        with torch.no_grad():
            target_extreme = target.detach().max() if log_target else target.detach().min()
            read = self.held.add(input.detach().max(), ("input", log_target, where, step))
            read += self.held.add(target_extreme, ("target", log_target, where, step))
        self.judge(read)

    def on_step_pre(self, optimizer) -> None:
        if self.held and self.context.steps.get(optimizer, 0) % READ_EVERY == 0:
            self.judge(self.held.read())

    def on_run_end(self) -> None:
        if self.held:
            try:
                self.judge(self.held.read())
            except TorchcheckError:
                raise
            except RuntimeError:  # a device error (e.g. an assert in the user's code) already ended the run
                pass

    def judge(self, read) -> None:
        for (what, log_target, where, step), value in read:
            if where in self.reported:
                continue
            if what == "input" and value > MARGIN:
                self.reported.add(where)
                self.report(f"`kl_div` got an input with values up to {value:.3g}: log-probabilities are never"
                            " above 0, so the input is probabilities or logits; pass `log_softmax(...)`",
                            where=where, step=step)
            elif what == "target" and not log_target and value < -MARGIN:
                self.reported.add(where)
                self.report(f"`kl_div` got a target with values down to {value:.3g} and `log_target=False`:"
                            " probabilities are never below 0, so the target is log-probabilities (pass"
                            " `log_target=True`) or logits (pass `softmax(...)`)", where=where, step=step)
            elif what == "target" and log_target and value > MARGIN:
                self.reported.add(where)
                self.report(f"`kl_div` got `log_target=True` and a target with values up to {value:.3g}:"
                            " log-probabilities are never above 0, so the target is probabilities (drop"
                            " `log_target=True`) or logits", where=where, step=step)
