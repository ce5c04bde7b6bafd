"""The (key, value) streams flush hands to putmulti come in LMDB key order, in both engines."""

import random

import pytest

from pointsledger import engine as engines


def random_keys(rng, count):
    keys = set()
    while len(keys) < count:
        shape = rng.randrange(4)
        if shape == 0:  # member ids: 7 bytes, one shared first byte
            keys.add(b"m%06d" % rng.randrange(1_000_000))
        elif shape == 1:  # sharing their first 8 bytes: ordered past the prefix
            keys.add(b"samepref" + bytes(rng.randrange(256) for _ in range(rng.randrange(4))))
        elif shape == 2:  # shorter than 8 bytes, prefixes of each other
            keys.add(bytes(rng.randrange(3) for _ in range(rng.randrange(4))))
        else:
            keys.add(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20))))
    return list(keys)


@pytest.mark.parametrize("engine_name", sorted(engines.ENGINES))
@pytest.mark.parametrize("count", [0, 1, 7, 511, 512, 4_000])
def test_sorted_items_are_in_key_order(engine_name, count):
    engine = engines.ENGINES[engine_name]
    rng = random.Random(count)
    overlay = {key: b"v%d" % number for number, key in enumerate(random_keys(rng, count))}
    streamed = [(bytes(key), bytes(value)) for key, value in engine.sorted_items(overlay)]
    assert streamed == sorted(overlay.items())
