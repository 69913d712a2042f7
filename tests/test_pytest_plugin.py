"""The pytest plugin, tested with pytester: lint items, the runtime fixture and marker, the
summary section, the cache and xdist."""
import libcst  # noqa: F401 - before pytester snapshots sys.modules: libcst's native parser keeps its first classes
import pytest

try:  # imported here, before pytester snapshots sys.modules: torch cannot be imported twice
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

BUGGY = """\
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss()


def step(model, x, y):
    return criterion(F.softmax(model(x), dim=1), y)
"""
CLEAN = "import torch\n\n\ndef test_nothing():\n    assert torch is not None\n"


def test_lint_items_fail_on_findings_and_pass_when_clean(pytester):
    pytester.makepyfile(buggy=BUGGY, clean="x = 1\n")
    result = pytester.runpytest("--torchcheck", "-k", "torchcheck")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*TC101 Softmax output (from `F.softmax(model(x), dim=1)`) is passed to `criterion`*",
        "* --> buggy.py:8:22",
        "*torchcheck*",
        "*1  TC101 softmax-before-cross-entropy*",
    ])


def test_unparsable_file_fails_its_item_and_the_session_goes_on(pytester):
    pytester.makepyfile(broken="def f(:\n", fine="y = 2\n")
    result = pytester.runpytest("--torchcheck", "-k", "torchcheck")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*TC001 Cannot parse file*"])


def test_config_applies_and_clean_results_are_cached(pytester):
    pytester.makepyprojecttoml('[tool.torchcheck]\nignore = ["TC101"]\n')
    pytester.makepyfile(buggy=BUGGY)
    pytester.runpytest("--torchcheck", "-k", "torchcheck").assert_outcomes(passed=1)
    cached = pytester.runpytest("--torchcheck", "-k", "torchcheck")
    cached.assert_outcomes(passed=1)
    assert pytester.path.joinpath(".pytest_cache").exists()


def test_a_changed_neighbour_invalidates_a_cached_clean_result(pytester):
    model = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
            "        self.body = nn.Sequential(nn.Linear(4, 2){})\n\n    def forward(self, x):\n        return self.body(x)\n"
    pytester.makepyfile(models=model.format(""), train="""\
        import torch.nn as nn
        from models import Net

        def loss(x, y):
            return nn.CrossEntropyLoss()(Net()(x), y)
        """)
    pytester.runpytest("--torchcheck", "-k", "torchcheck").assert_outcomes(passed=2)
    pytester.makepyfile(models=model.format(", nn.Softmax(dim=1)"))
    result = pytester.runpytest("--torchcheck", "-k", "torchcheck")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TC101*"])



def test_an_importer_that_starts_calling_a_function_invalidates_its_clean_result(pytester):
    """`validate` had no callers in the tree (its callers decide the mode), until an importer that
    never mentioned it calls it with a model in training mode."""
    pytester.makepyfile(evaluation="""\
        import torch

        SPLIT = "val"

        def validate(model, loader):
            with torch.no_grad():
                return [model(x).argmax(1) for x, _ in loader]
        """, caller="""\
        from torch import nn
        from evaluation import SPLIT

        def main(loader):
            model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
            print(SPLIT)
        """)
    pytester.runpytest("--torchcheck", "-k", "torchcheck").assert_outcomes(passed=2)
    pytester.makepyfile(caller="""\
        from torch import nn
        from evaluation import SPLIT, validate

        def main(loader):
            model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
            print(SPLIT, validate(model, loader))
        """)
    result = pytester.runpytest("--torchcheck", "-k", "torchcheck")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TC301*"])

RUNTIME_TEST = """
import pytest
import torch
import torch.nn as nn


def make():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_forgets_zero_grad(torchcheck_watch):
    model, optimizer = make()
    for _ in range(3):
        nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        optimizer.step()


def test_correct_loop(torchcheck_watch):
    model, optimizer = make()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        optimizer.step()
    assert torchcheck_watch.findings == []


@pytest.mark.torchcheck(ignore=["missing-zero-grad"])
def test_ignored_by_marker(torchcheck_watch):
    model, optimizer = make()
    for _ in range(3):
        nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        optimizer.step()


def test_without_the_fixture():
    model, optimizer = make()
    for _ in range(3):
        nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        optimizer.step()
"""


@needs_torch
def test_runtime_fixture_fails_a_training_test_with_a_real_bug(pytester):
    pytester.makepyfile(test_training=RUNTIME_TEST)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([
        "*test_forgets_zero_grad*",
        "*torchcheck runtime findings:*",
        "*TC201 `SGD.step()` uses gradients that already fed the previous step*",
        "* --> test_training.py:15:9 (step 1)",
    ])


@needs_torch
def test_runtime_option_applies_to_every_test(pytester):
    pytester.makepyfile(test_training=RUNTIME_TEST)
    result = pytester.runpytest_subprocess("--torchcheck-runtime")
    result.assert_outcomes(failed=2, passed=2)
    result.stdout.fnmatch_lines(["*torchcheck*", "*2  TC201 missing-zero-grad*"])


def test_xdist(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(buggy=BUGGY, clean="x = 1\n", also_clean="y = 1\n")
    result = pytester.runpytest_subprocess("--torchcheck", "-k", "torchcheck", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*1  TC101 softmax-before-cross-entropy*"])
