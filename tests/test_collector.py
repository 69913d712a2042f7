"""The cycle collector's settings during a lint run (`torchcheck.collector`): paused while the
linter loads, trees frozen as they are parsed, and the host process's settings given back."""
import gc

import pytest

from torchcheck import collector

SOURCE = b"import torch\nx = torch.zeros(3)\n"


@pytest.fixture
def host_settings():
    """The test process's collector settings, restored whatever a test does to them."""
    saved = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved[0])
    (gc.enable if saved[1] else gc.disable)()


def test_paused_until_the_first_tree_then_frozen_and_collecting(host_settings):
    gc.unfreeze()
    with collector.lint_run():
        assert not gc.isenabled()  # loading the linter
        collector.parse_module(SOURCE)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == collector.THRESHOLD


def test_the_host_settings_come_back_after_the_run_even_on_error(host_settings):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), collector.lint_run():
        collector.parse_module(SOURCE)
        raise RuntimeError
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


def test_a_host_that_turned_the_collector_off_keeps_it_off(host_settings):
    gc.unfreeze()
    gc.disable()
    with collector.lint_run():
        collector.parse_module(SOURCE)
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_a_host_that_freezes_objects_itself_is_left_alone(host_settings):
    gc.freeze()
    frozen = gc.get_freeze_count()
    with collector.lint_run():
        assert gc.isenabled()
        collector.parse_module(SOURCE)
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == frozen


def test_a_run_the_process_ends_with_leaves_its_frozen_objects_frozen(host_settings):
    gc.unfreeze()
    with collector.lint_run(process_exits=True):
        collector.parse_module(SOURCE)
    assert gc.get_freeze_count() > 0  # the final collection at exit skips them
    assert gc.isenabled()


def test_nested_runs_leave_the_settings_to_the_outer_one(host_settings):
    gc.unfreeze()
    with collector.lint_run():
        with collector.lint_run():
            collector.parse_module(SOURCE)
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_run_that_parses_nothing_stays_paused_then_gives_the_collector_back(host_settings):
    gc.unfreeze()
    with collector.lint_run():  # answered from the cache, or the parent of a parallel run
        assert not gc.isenabled()
    assert gc.isenabled()
