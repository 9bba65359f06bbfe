"""SharedByGroup: the sandbox providers' count of a group's users (what a group shares lives while any is open)."""

from __future__ import annotations

import threading

from pytest_benchflow.runners.sandbox_groups import SharedByGroup


def test_a_group_shares_one_thing_let_go_with_its_last_user() -> None:
    let_go: list[object] = []
    groups: SharedByGroup[object] = SharedByGroup(let_go.append)
    first = groups.hold("g", object)
    assert groups.hold("g", object) is first
    other = groups.hold("h", object)
    assert other is not first
    groups.release("g")
    assert let_go == []
    groups.release("g")
    assert let_go == [first]
    groups.release("g")  # released once too often: nothing held, nothing let go twice
    assert let_go == [first]
    assert groups.take_all() == [other]
    assert groups.take_all() == []


def test_two_sandboxes_of_a_new_group_opened_at_once_keep_one_and_let_the_other_go() -> None:
    let_go: list[object] = []
    groups: SharedByGroup[object] = SharedByGroup(let_go.append)
    both_making = threading.Barrier(2)

    def make() -> object:
        both_making.wait(timeout=10)  # each thread makes one before either is kept
        return object()

    kept: list[object] = []
    threads = [threading.Thread(target=lambda: kept.append(groups.hold("g", make))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(kept) == 2 and kept[0] is kept[1]
    assert len(let_go) == 1 and let_go[0] is not kept[0]
    groups.release("g")
    groups.release("g")
    assert let_go[1] is kept[0]
