"""The state folder's lock: one send at a time, whatever happens to the lock file."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import BusyError
from newsletter.ledger.lock import state_lock


def test_deleting_the_lock_file_does_not_let_a_second_send_in(tmp_path: Path) -> None:
    """Issue 13, 3: tmp cleaners and "rm stale lock" must not make two sends run at once."""
    state = tmp_path / "state"
    with state_lock(state, "send"):
        (state / "newsletter.ledger.lock").unlink()
        with pytest.raises(BusyError), state_lock(state, "send"):
            pass
    with state_lock(state, "send"):  # released: the next one gets in
        pass
