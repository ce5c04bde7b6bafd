"""A member record's engagement part, over both engines' MemberState (store_format, §17).

The Cython MemberState keeps the engagement state in C fields and hands
Python code the twin's member_engagement.Engagement when it asks for
`state.engagement`; a later engaged purchase takes that object back into the
C fields. These tests prove every way between the two forms keeps the record
byte for byte what the twin writes. The record below is built by hand from
store_format's layouts: a member with balance 700, one bucket, lifetime bonus
350, 2 purchases in tier year 2026, milestone "first" reached, and two
pending lots of orders "o-1" (200 points) and "o-22" (150 points).
"""

import pytest

from pointsledger import engine as engines
from pointsledger.store import format as fmt
from pointsledger.engine.member_engagement import Engagement

ENGINE_NAMES = tuple(engines.ENGINES)
T = 1_773_532_800  # 2026-03-15T00:00:00Z
DAY = 86_400
LOTS = [
    [T + 30 * DAY, T + 400 * DAY, 200, 5, b"o-1", 2026 * 12 + 2],
    [T + 31 * DAY, T + 401 * DAY, 150, 9, b"o-22", 2026 * 12 + 2],
]


def record(lots=LOTS, reached=(b"first",), bonus=350, purchases=2):
    head = fmt.MEMBER_HEAD.pack(fmt.MEMBER_RECORD_VERSION_LOTS_ENGAGED, 700, 0, 2026, 12_000, 0, 700, 0, 0, 0, 0,
                                9, 1)
    bucket = fmt.BUCKET_MONTH.pack(T + 400 * DAY, 350, 2026 * 12 + 2)
    engagement = fmt.ENGAGEMENT_HEAD.pack(bonus, 2026, purchases, len(reached))
    engagement += b"".join(bytes((len(key),)) + key for key in reached)
    engagement += fmt.LOT_COUNT.pack(len(lots))
    for release_s, expires_s, points, seq, order_key, month in lots:
        engagement += fmt.LOT_HEAD_MONTH.pack(release_s, expires_s, points, seq, month, len(order_key)) + order_key
    return head + bucket + engagement


@pytest.fixture(params=ENGINE_NAMES)
def member_state(request):
    return engines.ENGINES[request.param].MemberState


def test_a_decoded_record_encodes_to_the_same_bytes(member_state):
    value = record()
    assert member_state.decode(value).encode() == value
    empty = record(lots=[], reached=(), bonus=0, purchases=0)
    assert member_state.decode(empty).encode() == empty


def test_the_engagement_read_from_a_record_is_the_twins(member_state):
    engagement = member_state.decode(record()).engagement
    assert type(engagement) is Engagement
    assert (engagement.bonus, engagement.year, engagement.purchases) == (350, 2026, 2)
    assert engagement.reached == [b"first"]
    assert engagement.lots == LOTS


def test_a_change_made_through_the_python_form_is_written(member_state):
    state = member_state.decode(record())
    state.engagement.lots[1][2] -= 50  # as engagement.claw_back takes points from a lot
    state.engagement.bonus += 100
    assert state.encode() == record(lots=[LOTS[0], LOTS[1][:2] + [100] + LOTS[1][3:]], bonus=450)


def test_an_engagement_set_from_python_is_written_and_none_makes_a_plain_record(member_state):
    state = member_state.decode(record())
    engagement = Engagement(2026, 2)
    engagement.bonus = 350
    engagement.reached = [b"first"]
    engagement.lots = [list(lot) for lot in LOTS]
    state.engagement = engagement
    assert state.encode() == record()
    state.engagement = None
    plain = state.encode()
    assert plain[0] == fmt.MEMBER_RECORD_VERSION_LOTS
    assert plain == record()[:fmt.MEMBER_HEAD.size + fmt.BUCKET_MONTH.size].replace(
        bytes((fmt.MEMBER_RECORD_VERSION_LOTS_ENGAGED,)), bytes((fmt.MEMBER_RECORD_VERSION_LOTS,)), 1)


def test_a_truncated_engagement_part_is_refused(member_state):
    with pytest.raises((ValueError, IndexError, fmt.struct.error)):
        member_state.decode(record()[:-1])
