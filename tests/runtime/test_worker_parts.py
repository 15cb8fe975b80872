"""`Worker` is composed of parts, not mixins: its instance lifecycle is an object it holds."""

from __future__ import annotations

import inspect

from caxton.runtime.scheduling import executor, lifecycle
from caxton.runtime.scheduling.executor import Worker
from caxton.runtime.scheduling.lifecycle import InstanceLifecycle


def test_the_worker_inherits_nothing_and_holds_its_lifecycle() -> None:
    assert Worker.__mro__ == (Worker, object)
    assert InstanceLifecycle.__mro__ == (InstanceLifecycle, object)
    assert "lifecycle" in inspect.getsource(Worker.__init__)


def test_no_part_has_placeholders_for_its_host() -> None:
    """A mixin declares what its host provides with ``raise NotImplementedError`` stubs."""
    for module in (executor, lifecycle):
        assert "NotImplementedError" not in inspect.getsource(module), module.__name__
