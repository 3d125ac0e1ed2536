"""`translate_failure`: the one line a failed run prints names the real cause."""

from __future__ import annotations

from concord_pipelines.concord.runner import translate_failure


def test_bug_raised_from_generator_plumbing_is_reported_by_its_own_name():
    """dlt advances resources with next(): a bug must not be reported as 'StopIteration'."""
    try:
        try:
            next(iter([]))
        except StopIteration:
            raise TypeError("get_json() got an unexpected keyword argument 'decode'")  # noqa: B904 - as dlt does
    except TypeError as bug:
        try:
            raise RuntimeError("Pipeline execution failed at step=extract") from bug
        except RuntimeError as wrapped:
            message = str(translate_failure(wrapped))
    assert "TypeError: get_json() got an unexpected keyword argument 'decode'" in message, message
    assert "StopIteration" not in message and "\n" not in message


def test_load_failure_says_the_package_stays_pending():
    class StepFailed(Exception):
        step = "load"

    try:
        raise StepFailed("load failed") from OSError("No space left on device")
    except StepFailed as err:
        message = str(translate_failure(err))
    assert "during load" in message and "OSError: No space left on device" in message
    assert "pending load package" in message
