"""Signals that stop a run the way Ctrl-C does."""

import signal
import threading


def stop_on_hangup() -> None:
    """SIGHUP (the terminal or SSH session closed) and SIGQUIT (Ctrl-\\) stop a run as Ctrl-C does: the
    run ends failed and finished shards are kept. Dagster maps only SIGTERM to SIGINT; left alone, these
    two kill the process at once and the run stays "started" forever. Whatever handles SIGINT at the
    moment the signal arrives (Dagster's own, during a run) handles them; an ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return

    def as_interrupt(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signum, frame)
        else:
            raise KeyboardInterrupt

    for hangup in (signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(hangup) == signal.SIG_DFL:
            signal.signal(hangup, as_interrupt)
