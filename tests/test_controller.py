"""qclip.controller pieces that need no pytest session: the failure reason of a report."""

from __future__ import annotations

from types import SimpleNamespace

from qclip.controller import failure_reason


def _report(longrepr, text="", when="call"):
    return SimpleNamespace(longrepr=longrepr, longreprtext=text, when=when)


def test_the_reason_is_the_exception_line_not_the_traceback_tail():
    crash = SimpleNamespace(message="RuntimeError: shape '[96, 1]' is invalid for input of size 144")
    text = "def forward(x):\n>   return f(x)\nE   RuntimeError: shape '[96, 1]' is invalid\n\nfunctional.py:1700: RuntimeError"
    assert failure_reason(_report(SimpleNamespace(reprcrash=crash), text)) == crash.message


def test_without_a_crash_entry_the_first_E_line_or_the_last_line():
    text = "worker crashed\nE   AssertionError: accuracy not preserved\nmore"
    assert failure_reason(_report("string longrepr", text)) == "AssertionError: accuracy not preserved"
    assert failure_reason(_report("x", "[gw0] node down: Not properly terminated\n")) == \
        "[gw0] node down: Not properly terminated"
    assert failure_reason(_report(None, "", when="setup")) == "setup failed (no message)"
