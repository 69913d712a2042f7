"""The shared memo keeps only answers that do not depend on how they were reached."""
from torchcheck.analysis.memo import SharedMemo


def test_an_answer_cut_by_recursion_is_kept_only_for_the_current_file():
    memo, table = SharedMemo(), {}

    def f():
        return ("f", memo.get(table, "g", 0, g, "cut"))

    def g():
        return ("g", memo.get(table, "f", 0, f, "cut"))

    memo.begin_file()
    assert memo.get(table, "f", 0, f, "cut") == ("f", ("g", "cut"))
    assert table == {}  # both saw the cycle: neither is shared
    memo.begin_file()
    assert memo.get(table, "g", 0, g, "cut") == ("g", ("f", "cut"))  # entered the other way, answered afresh


def test_an_answer_cut_by_depth_is_kept_per_depth():
    memo, table = SharedMemo(), {}

    def deep():
        memo.depth_cut()
        return "shallow view"

    memo.begin_file()
    memo.get(table, "k", 3, deep, None)
    assert ("k", 3) in table and "k" not in table


def test_an_isolated_evaluation_is_not_cut_by_what_encloses_it():
    memo, table = SharedMemo(), {}

    def outer():
        with memo.isolated():
            return memo.get(table, "outer", 0, lambda: "whole", "cut")

    memo.begin_file()
    assert memo.get(table, "outer", 0, outer, "cut") == "whole"
