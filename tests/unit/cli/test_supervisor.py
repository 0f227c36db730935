"""The supervisor restarts a dead child after a growing, capped delay, logs each crash once,
keeps restarting a child that fails to start, and forgets old crashes once a child is stable."""

from __future__ import annotations

from dataclasses import dataclass, field

from kassa.cli.supervisor import Supervisor, restart_delay_s
from kassa.shared.limits import child_restart_delay_s_max, child_stable_s


@dataclass
class FakeChild:
    name: str
    up: bool = False
    starts: int = 0
    cleanups: int = 0
    fail_starts: int = 0
    events: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.up

    def start(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("port busy")
        self.up = True

    def stop(self) -> None:
        self.up = False

    def cleanup(self) -> None:
        self.cleanups += 1

    def describe_exit(self) -> str:
        return "was killed by signal 9"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_restart_delays_double_from_a_quarter_second_up_to_the_cap() -> None:
    assert [restart_delay_s(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert restart_delay_s(50) == child_restart_delay_s_max


def test_a_dead_child_is_cleaned_up_and_restarted_after_its_delay_and_logged_once() -> None:
    said: list[str] = []
    clock = Clock()
    supervisor = Supervisor(said.append, clock)
    child = FakeChild("api")
    supervisor.add(child)
    assert child.starts == 1
    child.up = False
    supervisor.tick()
    assert child.cleanups == 1 and child.starts == 1, "not restarted before its delay"
    supervisor.tick()
    assert said == ["api was killed by signal 9; restarting in 0.25 s"], "one line per crash"
    clock.now += 0.25
    supervisor.tick()
    assert child.starts == 2 and child.up
    assert said[-1] == "api restarted" and supervisor.restarts["api"] == 1


def test_crashes_in_a_row_back_off_and_a_stable_child_starts_over() -> None:
    said: list[str] = []
    clock = Clock()
    supervisor = Supervisor(said.append, clock)
    child = FakeChild("worker")
    supervisor.add(child)
    for expected in (0.25, 0.5, 1.0):
        child.up = False
        supervisor.tick()
        assert said[-1].endswith(f"restarting in {expected:.2f} s")
        clock.now += expected
        supervisor.tick()
        assert child.up
    clock.now += child_stable_s
    supervisor.tick()  # stable long enough: the crash count is reset
    child.up = False
    supervisor.tick()
    assert said[-1].endswith("restarting in 0.25 s")


def test_a_child_that_fails_to_start_is_retried_with_more_backoff() -> None:
    said: list[str] = []
    clock = Clock()
    supervisor = Supervisor(said.append, clock)
    child = FakeChild("nats")
    supervisor.add(child)
    child.up = False
    child.fail_starts = 1
    supervisor.tick()
    clock.now += 0.25
    supervisor.tick()
    assert not child.up and said[-1] == "nats failed to start (OSError: port busy); retrying in 0.50 s"
    clock.now += 0.4
    supervisor.tick()
    assert child.starts == 2, "still waiting for the longer delay"
    clock.now += 0.1
    supervisor.tick()
    assert child.up and child.starts == 3


def test_stop_stops_every_child() -> None:
    supervisor = Supervisor(lambda _: None, Clock())
    children = [FakeChild("postgresql"), FakeChild("nats"), FakeChild("api")]
    for child in children:
        supervisor.add(child)
    supervisor.stop()
    assert not any(c.up for c in children)
