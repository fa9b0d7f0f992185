"""The Tuner that tune-rec builds, and what it leaves behind in this process."""

from __future__ import annotations

import signal

from tune_rec.search.tuner import keep_signal_handlers


def test_signal_handlers_restored_after_block():
    def handler(number, frame):
        return None

    before = signal.getsignal(signal.SIGINT)
    with keep_signal_handlers():
        # What Tuner.fit does and leaves in place after a run that finishes.
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGUSR1, handler)
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGUSR1) is not handler
