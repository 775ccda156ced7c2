"""Stopping on SIGTERM/SIGINT (empp_ff._signals): the signal stops the command even when it
lands where Python cannot raise it (a finaliser the garbage collector runs)."""

import os
import signal

import pytest

from empp_ff._signals import Stopped, deferred, stop_on_signals


class _SignalsInFinaliser:
    """Its ``__del__`` sends SIGTERM and keeps running Python code, so the handler runs inside it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(2000):
            sum(range(10))


def _busy(iterations: int) -> int:
    total = 0
    for _ in range(iterations):
        total += sum(range(10))
    return total


def test_a_signal_inside_a_finaliser_still_stops_the_block(capfd):
    with pytest.raises(Stopped, match="stopped by SIGTERM"):
        with stop_on_signals():
            _SignalsInFinaliser()  # collected at once: the signal arrives inside __del__
            _busy(5_000_000)  # seconds of work: the block must not get to its end
            pytest.fail("the block ran to its end after SIGTERM")
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_signal_held_in_a_deferred_section_stops_the_block_when_it_ends():
    done = []
    with pytest.raises(Stopped):
        with stop_on_signals():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                _busy(20_000)
                done.append("deferred section finished")
            pytest.fail("not stopped after the deferred section")
    assert done == ["deferred section finished"]


def test_outside_the_block_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
