"""Messages claim only what the analysis knows: a model without Dropout is never told its Dropout
stays active."""
import textwrap
from pathlib import Path

from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.linter import lint_source
from torchcheck.registry import all_rules


def messages(code: str) -> list[str]:
    source = textwrap.dedent(code).encode()
    return [f.message for f in lint_source(source, Path("m.py"), Config(), list(all_rules()), Project()).findings]


def test_eval_mode_message_names_only_the_layers_the_model_has():
    [message] = messages("""
        import torch
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
            def forward(self, x):
                return self.body(x).mean((2, 3))
        model = Net()
        def validate(loader):
            with torch.no_grad():
                for x, y in loader:
                    model(x)
    """)
    assert "BatchNorm uses batch statistics" in message and "Dropout" not in message


def test_eval_mode_message_hedges_for_an_unknown_model():
    [message] = messages("""
        import torch
        from somewhere import build
        model = build()
        def validate(loader):
            with torch.no_grad():
                for x, y in loader:
                    model(x)
    """)
    assert "any Dropout stays active and any BatchNorm" in message
