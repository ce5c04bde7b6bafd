"""The Cython engine's member cache behaves as the dict it replaces."""

import random

import pytest

from pointsledger import engine as engines

engine_c = engines.ENGINES.get("cython")
pytestmark = pytest.mark.skipif(engine_c is None, reason="the compiled engine is not built")


def test_member_cache_matches_a_dict_through_random_changes():
    cache, expected = engine_c.MemberCache(), {}
    rng = random.Random(7)
    for step in range(30_000):
        # Short keys (inline in a slot) and long ones (compared in the key object), colliding often.
        if rng.random() < 0.7:
            key = b"m%d" % rng.randrange(3_000)
        else:
            key = b"member-with-a-long-id-%d" % rng.randrange(300)
        action = rng.random()
        if action < 0.5:
            cache[key] = expected[key] = step
        elif action < 0.7:
            if key in expected:
                del cache[key]
                del expected[key]
            else:
                with pytest.raises(KeyError):
                    del cache[key]
        else:
            assert cache.get(key) == expected.get(key)
            assert (key in cache) == (key in expected)
    assert len(cache) == len(expected)
    assert sorted(cache.items()) == sorted(expected.items())
    assert sorted(cache) == sorted(expected)
    assert cache[b"m1"] == expected[b"m1"]


def test_member_cache_keys_are_bytes_and_clear_empties_it():
    cache = engine_c.MemberCache()
    cache[bytearray(b"m000001")] = "state"
    assert cache[b"m000001"] == "state"
    assert cache.get(memoryview(b"m000001")) == "state"
    assert cache.get(b"m000002", "absent") == "absent"
    with pytest.raises(TypeError, match="member keys are bytes, not str"):
        cache["m000001"] = "state"
    with pytest.raises(KeyError):
        cache[b"m000002"]
    cache.clear()
    assert (len(cache), cache.items(), bool(cache)) == (0, [], False)
