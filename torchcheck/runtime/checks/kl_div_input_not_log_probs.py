"""Runtime twin of `torchcheck/rules/kl_div_input_not_log_probs.py`: `kl_div` (so `nn.KLDivLoss`)
given an input with a value above 0, which log-probabilities never have; with
`log_target=False`, a target with a value below 0, which probabilities never have; with
`log_target=True`, a target above 0. A margin (`MARGIN`) leaves `log(p + eps)` alone.

The extreme values are read as `SampledValuesCheck` reads (sampled per line, held on an accelerator
until read together, so no step waits for the device); each line is reported once."""
from __future__ import annotations

import torch

from torchcheck.runtime.device_reads import SampledValuesCheck
from torchcheck.runtime.events import arg

MARGIN = 1e-3


class KlDivInputNotLogProbs(SampledValuesCheck):
    name = "kl-div-input-not-log-probs"

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if name != "kl_div" or not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor) \
                or not input.numel() or not target.numel() or input.is_complex() or target.is_complex():
            return
        where = locate()
        if where in self.reported or not self.sampled(where):
            return
        log_target = bool(arg(args, kwargs, 5, "log_target"))
        step = self.context.iteration
        with torch.no_grad():
            target_extreme = target.detach().max() if log_target else target.detach().min()
            read = self.held.add(input.detach().max(), ("input", log_target, where, step))
            read += self.held.add(target_extreme, ("target", log_target, where, step))
        self.judge(read)

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
