"""Runs of several processes (torchrun, torch.multiprocessing): every rank checks its own process,
and at the end rank 0 merges the findings of all ranks. The same finding on several ranks becomes
one finding with their `ranks`.

Findings travel through the key-value store of the job's process group (the one torchrun or
`init_process_group` set up; torch.distributed is the engine, nothing else is opened). Ranks other
than 0 put their findings there and go on; only rank 0 waits, for the others, at the end. The
store is remembered when the script destroys its default process group, so a script ending with
`destroy_process_group()` is merged too. When there is no store (no process group was made, or it
cannot be reached), each rank reports on its own, and says so."""
from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import sys
from dataclasses import dataclass, replace

from torchcheck.types import Finding

GATHER_TIMEOUT_S = 300.0  # how long rank 0 waits for the others' findings (TORCHCHECK_GATHER_TIMEOUT overrides)


@dataclass(frozen=True)
class Group:
    """What this process knows of its job: its rank, how many ranks, and the store they share."""

    rank: int
    world_size: int
    store: object | None


_remembered: Group | None = None  # while a session lasts: the default group, when the script destroyed it
_gathers = 0  # gathers made by this process: every rank makes them in the same order


def rank() -> int | None:
    """This process's rank in a job of several processes, else None."""
    group = current_group()
    return group.rank if group is not None else None


def current_group() -> Group | None:
    """The job this process belongs to, with a store when one is reachable; None in one process."""
    live = _live_group()
    if live is not None:
        return live if live.world_size > 1 else None
    if _remembered is not None:
        return _remembered
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1 and os.environ.get("RANK", "").isdigit():
        return Group(int(os.environ["RANK"]), int(world), None)
    return None


def _live_group() -> Group | None:
    """The default process group, when one is initialized and answers."""
    try:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        from torch.distributed.distributed_c10d import _get_default_store

        return Group(dist.get_rank(), dist.get_world_size(), _get_default_store())
    except Exception:  # noqa: BLE001 - a broken process group counts as gone
        return None


def remember_store_on_destroy(stack: contextlib.ExitStack) -> None:
    """Until the stack closes, keep the default group's store when the script destroys the group."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not dist.is_available():
        return
    from torchcheck.runtime.events import patch

    def make(original):
        def wrapper(group=None, *args, **kwargs):
            global _remembered
            if group is None or group is dist.GroupMember.WORLD:
                found = current_group()
                if found is not None and found.store is not None:
                    _remembered = found
            return original(group, *args, **kwargs)

        return wrapper

    import torch.distributed.distributed_c10d as c10d

    for owner in (dist, c10d):  # `dist.destroy_process_group` and torch's own calls
        patch(stack, owner, "destroy_process_group", make)


def forget_store() -> None:
    global _remembered
    _remembered = None


@dataclass
class Gathered:
    """What one rank has to report at the end of a run."""

    findings: list[Finding] | None  # None on a rank other than 0: rank 0 reports its findings
    group: Group | None = None
    missing: tuple[int, ...] = ()  # ranks whose findings did not reach rank 0 in time
    alone: str | None = None  # why this rank reports its own findings only: "no store" | "failed"

    def notes(self, written_to=None) -> list[str]:
        """What the reader of this rank's report must know."""
        notes = []
        if self.missing:
            which = ", ".join(map(str, self.missing))
            notes.append(f"the findings of rank{'s' if len(self.missing) > 1 else ''} {which} did not reach rank 0"
                         " in time; the report has the other ranks' findings")
        where = f" to {written_to}" if written_to is not None else ""
        if self.alone == "no store":
            notes.append(f"rank {self.group.rank}: the process group was gone at the end of the run, so the ranks'"
                         f" findings were not merged; this rank reports its own{where}")
        elif self.alone == "failed":
            notes.append(f"rank {self.group.rank}: the code failed on this rank, so the other ranks may never finish"
                         f" (torchrun stops them); this rank reports its own findings{where}")
        return notes


def gather(findings: list[Finding], known: Group | None = None, timeout: float | None = None,
           failed: bool = False) -> Gathered:
    """Every rank calls this once at the end of a run, in the same order as the other ranks.
    `known`: the job as seen when the run ended, used when its process group is gone now.
    `failed`: the code failed on this rank, so it waits for no one: rank 0 merges what the others
    handed over already; another rank hands its findings over and also reports them itself."""
    global _gathers
    group = current_group()
    if known is not None and (group is None or group.store is None):
        group = known
    if group is None:
        return Gathered(findings)
    if group.store is None:
        return Gathered(findings, group, alone="no store")
    prefix = f"torchcheck/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{_gathers}/"
    _gathers += 1
    if group.rank != 0:
        try:
            group.store.set(prefix + str(group.rank), pickle.dumps(findings))
        except Exception:  # noqa: BLE001 - the store is gone with rank 0: report alone
            return Gathered(findings, group, alone="no store")
        return Gathered(findings, group, alone="failed") if failed else Gathered(None, group)
    if failed:
        timeout = 0.0  # take what the others handed over already: they may be waiting for this rank
    elif timeout is None:
        timeout = float(os.environ.get("TORCHCHECK_GATHER_TIMEOUT", GATHER_TIMEOUT_S))
    others = [prefix + str(r) for r in range(1, group.world_size)]
    if timeout > 0:
        with contextlib.suppress(Exception):  # a timeout: take what arrived
            group.store.wait(others, datetime.timedelta(seconds=timeout))
    by_rank = {0: findings}
    missing = []
    for r, key in enumerate(others, 1):
        try:
            arrived = group.store.check([key])
            by_rank[r] = pickle.loads(group.store.get(key)) if arrived else None
        except Exception:  # noqa: BLE001
            by_rank[r] = None
        if by_rank[r] is None:
            missing.append(r)
    return Gathered(merge([f for r in sorted(by_rank) for f in by_rank[r] or ()]), group, tuple(missing))


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (code, place, module), with the ranks it happened on, the earliest step and
    the total count; the message is the lowest rank's."""
    merged: dict[tuple, Finding] = {}
    for finding in sorted(findings, key=lambda f: min(f.ranks, default=0)):
        key = (finding.code, finding.path, finding.line, finding.module_path)
        seen = merged.get(key)
        if seen is None:
            merged[key] = finding
            continue
        steps = [s for s in (seen.step, finding.step) if s is not None]
        merged[key] = replace(seen, ranks=tuple(sorted({*seen.ranks, *finding.ranks})),
                              count=seen.count + finding.count, step=min(steps) if steps else None)
    return sorted(merged.values(), key=lambda f: (f.path, f.line, f.column, f.code))


def rank_path(path, rank_number: int):
    """`r.json` -> `r.rank3.json`: where one rank writes its own report."""
    return path.with_name(f"{path.stem}.rank{rank_number}{path.suffix}")


def say(message: str) -> None:
    print(f"torchcheck: {message}", file=sys.stderr, flush=True)
