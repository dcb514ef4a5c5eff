"""qclip.run.controller pieces that need no pytest session: the failure reason of a report."""

from __future__ import annotations

from types import SimpleNamespace

from qclip.run.controller import failure_reason


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


def test_one_gpu_per_worker_with_a_simulated_device_count(monkeypatch):
    import dataclasses

    import torch

    from qclip.run.options import PluginOptions, worker_device
    from qclip.run.session import SessionOptions
    from qclip.run.workers import one_gpu_per_worker

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    base = PluginOptions(session=SessionOptions(device="cuda"))
    got = [one_gpu_per_worker(base, f"gw{i}").session.device for i in range(5)]
    assert got == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    named = dataclasses.replace(base, session=SessionOptions(device="cuda:2"))
    assert one_gpu_per_worker(named, "gw0").session.device == "cuda:2"
    cpu = dataclasses.replace(base, session=SessionOptions(device="cpu"))
    assert one_gpu_per_worker(cpu, "gw1").session.device == "cpu"
    assert worker_device("cuda", None, 3) == "cuda" and worker_device("cuda", "gw4", 0) == "cuda"


def test_the_controller_records_each_workers_device():
    from qclip.run.controller import Controller

    ctl = Controller.__new__(Controller)  # only the attributes the hook touches
    ctl.counters, ctl.worker_devices = {}, {}
    for i, dev in enumerate(("cuda:0", "cuda:1")):
        node = SimpleNamespace(gateway=SimpleNamespace(id=f"gw{i}"),
                               workeroutput={"qclip_counters": {"quantize_calls": 2}, "qclip_device": dev})
        ctl.pytest_testnodedown(node, None)
    assert ctl.worker_devices == {"gw0": "cuda:0", "gw1": "cuda:1"} and ctl.counters["quantize_calls"] == 4


def test_embedding_keys_name_the_device_type_not_its_index():
    from qclip.embed import EmbedKey

    parts = [EmbedKey("m", "w", "q", "{}", dev).parts() for dev in ("cuda:0", "cuda:1", "cuda")]
    assert parts[0] == parts[1] == parts[2] and parts[0]["device"] == "cuda"
