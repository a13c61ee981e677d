"""``plait`` re-exports the engine's names lazily from its own list: the two lists must not drift."""

from __future__ import annotations

import plait
import plait.engine


def test_every_engine_name_is_reachable_from_plait():
    assert set(plait._ENGINE) == set(plait.engine.__all__)
    for name in plait._ENGINE:
        assert getattr(plait, name) is getattr(plait.engine, name)
