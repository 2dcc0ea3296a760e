"""Which errors a GPU step retries: a transient one (`is_transient`) asks Dagster for a retry
(`retry_if_transient`); anything else fails the step at once."""

from contextlib import contextmanager

from dagster import Failure, RetryRequested

TRANSIENT_RETRIES, RETRY_WAIT_SECONDS = 2, 20

# Errors that may heal on a retry: a CUDA launch failure (a flaky device or driver), a hub or network
# timeout, and transient IO. Everything else (bad settings, missing or corrupt weights, an impossible
# device, a bug) fails the same way every time and is never retried.
TRANSIENT_MESSAGES = ("unspecified launch failure", "cuda error: launch failure", "nccl error", "connection reset",
                      "connection aborted", "read timed out", "timed out", "temporarily unavailable",
                      "service unavailable", "bad gateway", "gateway timeout")
TRANSIENT_ERRNOS = {5, 11, 104, 110, 116}  # EIO, EAGAIN, ECONNRESET, ETIMEDOUT, ESTALE


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is worth a retry."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return True
        if any(m in f"{type(exc).__name__}: {exc}".lower() for m in TRANSIENT_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def retry_if_transient(log, what: str):
    """Around a GPU step's work: a transient error (`is_transient`: a CUDA launch failure, a hub timeout,
    transient IO) asks Dagster for a retry; anything else fails the step at once. An interrupt is not an
    Exception, so Ctrl-C, SIGTERM and a cancel from the UI always stop the run."""
    try:
        yield
    except (Failure, RetryRequested):
        raise
    except Exception as exc:  # noqa: BLE001 - classified, then re-raised or turned into a retry
        if is_transient(exc):
            log(f"transient error in {what}, retrying in {RETRY_WAIT_SECONDS} s (finished work is kept): {exc}")
            raise RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=RETRY_WAIT_SECONDS) from exc
        raise
