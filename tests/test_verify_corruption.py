"""verify() proven: one corruption per invariant it checks, written with raw LMDB into a copy
of a store built by a real workload; verify() must name exactly that problem and where.

Most corruptions are made consistent everywhere but in the one invariant under test (a
balance changed together with its bucket and the expiry total), so the expected report is
the one problem, written out in full: with that check switched off, the test fails.

The workload (simple programme: 1 point per 100 cents, expiry 1 month), worked by hand:
  seq  1 EARN     alice o-1   10,000 "x" 2026-03-15  +100 → 100  bucket 2026-05-01
  seq  2 EARN     bob   o-2   20,000 "y" 2026-03-15  +200 → 200  bucket 2026-05-01
  seq  3 EARN     alice o-3   30,000 "x" 2026-03-15  +300 → 400
  seq  4 REDEEM   bob   rd-1  100 points 2026-03-20  −100 → 100
  seq  5 CLAWBACK bob   r-1   5,000 of o-2 2026-03-25: floor(200 × 5,000 / 20,000) = 50 → 50
  seq  6 CLAWBACK bob   r-2   15,000 of o-2: floor(200 × 20,000 / 20,000) − 50 = 150 → −100 (debt 100)
  seq  7 ADJUST   bob   adj-1 +30 2026-04-01: pays debt → −70 (debt 70)
  seq  8 ADJUST   alice adj-2 −40 2026-04-01 → 360
  seq  9 EXPIRE   alice expire-run@2026-05-01 −360 → 0
  seq 10 EARN     carol o-4   12,345 "z" 2026-05-01  +123 → 123  bucket 2026-07-01
  seq 11 EARN     bob   o-5   10,000 "x" 2026-05-02  +100 → 30 (70 pay the debt), bucket 2026-07-01: 30
  seq 12 EARN     carol o-6    1,000 "z" 2026-06-10  +10 → 133   bucket 2026-08-01
Expiry totals: 2026-07-01 → 123 + 30 = 153, 2026-08-01 → 10. Categories x 0, y 1, z 2.
"""

import shutil

import lmdb
import pytest

import pointsledger
from pointsledger import calendar
from pointsledger.store import format as fmt
from support import (
    DAY_S, T_2026_03_15, T_2026_03_25, T_2026_04_01, T_2026_05_01, T_2026_06_01, T_2026_07_01,
    simple_program,
)

T_2026_03_16 = T_2026_03_15 + DAY_S
T_2026_03_20 = T_2026_03_15 + 5 * DAY_S
T_2026_05_02 = T_2026_05_01 + DAY_S
T_2026_06_10 = T_2026_06_01 + 9 * DAY_S
T_2026_08_01 = 1_785_542_400  # 2026-08-01T00:00:00Z
T_2026_09_01 = 1_788_220_800  # 2026-09-01T00:00:00Z

MEMBER_FIELDS = ("version", "balance", "debt", "tier_year", "spend", "carried", "earned", "redeemed",
                 "expired", "clawed_back", "adjusted", "last_seq", "bucket_count")
ENTRY_FIELDS = ("kind", "points", "balance", "time", "version", "previous", "member", "ref")
ORDER_FIELDS = ("amount", "time", "seq", "refunded", "clawed", "category")


def build_workload(path, engine_name):
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program(expiry_months=1))
        ledger.purchases(["o-1", "o-2", "o-3"], ["alice", "bob", "alice"], [10_000, 20_000, 30_000],
                         ["x", "y", "x"], [T_2026_03_15] * 3)
        ledger.redeem("rd-1", "bob", 100, T_2026_03_20)
        ledger.refund("r-1", "o-2", 5_000, T_2026_03_25)
        ledger.refund("r-2", "o-2", 15_000, T_2026_03_25)
        ledger.adjust("adj-1", "bob", 30, "goodwill", T_2026_04_01)
        ledger.adjust("adj-2", "alice", -40, "fix", T_2026_04_01)
        ledger.expire(T_2026_05_01)
        ledger.purchase("o-4", "carol", 12_345, "z", T_2026_05_01)
        ledger.purchase("o-5", "bob", 10_000, "x", T_2026_05_02)
        last = ledger.purchase("o-6", "carol", 1_000, "z", T_2026_06_10)
        assert (last.seq, last.balance) == (12, 133)
        assert ledger.balance("bob", T_2026_06_10).balance == 30
        report = ledger.verify()
        assert (report.problems, report.entries, report.members) == ([], 12, 3)


@pytest.fixture(scope="module")
def workloads(tmp_path_factory):
    built = {}

    def get(engine_name):
        if engine_name not in built:
            path = tmp_path_factory.mktemp("workload") / engine_name
            build_workload(path, engine_name)
            built[engine_name] = path
        return built[engine_name]

    return get


# --- raw LMDB editing with the format of store_format ----------------------------------------


class Raw:
    """A write transaction on a closed store, with decode/edit/encode helpers."""

    def __init__(self, txn, dbs):
        self.txn, self.dbs = txn, dbs

    def get(self, db, key):
        return self.txn.get(key, db=self.dbs[db])

    def put(self, db, key, value):
        self.txn.put(key, value, db=self.dbs[db])

    def delete(self, db, key):
        assert self.txn.delete(key, db=self.dbs[db]), (db, key)

    def member(self, name, buckets=None, **changes):
        """Change fields of a member record (and optionally its buckets).

        Buckets are (expiry instant, points): their issue month (§19) is the one the
        workload's expiry of one month gives, two months before the instant's."""
        key = name.encode()
        value = self.get(fmt.DB_MEMBERS, key)
        fields = dict(zip(MEMBER_FIELDS, fmt.MEMBER_HEAD.unpack_from(value)))
        if buckets is None:
            buckets = list(fmt.BUCKET_MONTH.iter_unpack(value[fmt.MEMBER_HEAD.size:]))
        else:
            buckets = [(instant, points, calendar.issue_month_of(instant) - 2) for instant, points in buckets]
        fields.update(changes, bucket_count=len(buckets))
        self.put(fmt.DB_MEMBERS, key, fmt.MEMBER_HEAD.pack(*fields.values())
                 + b"".join(fmt.BUCKET_MONTH.pack(*bucket) for bucket in buckets))

    def entry(self, seq, **changes):
        fields = dict(zip(ENTRY_FIELDS, fmt.decode_entry(self.get(fmt.DB_JOURNAL, fmt.seq_key(seq)))))
        fields.update(changes)
        self.put(fmt.DB_JOURNAL, fmt.seq_key(seq), fmt.encode_entry(*fields.values()))

    def order(self, order_id, **changes):
        key = order_id.encode()
        fields = dict(zip(ORDER_FIELDS, fmt.decode_order(self.get(fmt.DB_ORDERS, key))))
        fields.update(changes)
        self.put(fmt.DB_ORDERS, key, fmt.encode_order(*fields.values()))

    def tail(self, db, head, record_id, name=None, rest=None, **changes):
        """Change a refund, redemption or adjustment: fields (amount_or_points, time, seq)."""
        key = record_id.encode()
        (amount, time_s, seq), stored_name, stored_rest = fmt.decode_tail(head, self.get(db, key))
        fields = {"value": amount, "time": time_s, "seq": seq}
        fields.update(changes)
        self.put(db, key, fmt.encode_tail(head, tuple(fields.values()),
                                          stored_name if name is None else name.encode(),
                                          stored_rest if rest is None else rest))

    def expiry(self, instant, points):
        if points is None:
            self.delete(fmt.DB_EXPIRY, fmt.I64.pack(instant))
        else:
            self.put(fmt.DB_EXPIRY, fmt.I64.pack(instant), fmt.I64.pack(points))

    def day(self, time_s, **changes):
        key = fmt.I32.pack(time_s // DAY_S)
        stored = self.get(fmt.DB_DAYS, key)
        fields = dict(zip(fmt.COUNTER_FIELDS, fmt.COUNTERS.unpack(stored) if stored else [0] * 7))
        fields.update(changes)
        self.put(fmt.DB_DAYS, key, fmt.COUNTERS.pack(*fields.values()))

    def totals(self, **changes):
        fields = dict(zip(fmt.COUNTER_FIELDS, fmt.COUNTERS.unpack(self.get(fmt.DB_META, fmt.META_TOTALS))))
        fields.update(changes)
        self.put(fmt.DB_META, fmt.META_TOTALS, fmt.COUNTERS.pack(*fields.values()))


def corrupted_report(workloads, tmp_path, engine_name, corrupt):
    path = tmp_path / "copy"
    shutil.copytree(workloads(engine_name), path)
    env = lmdb.open(str(path), max_dbs=32)
    try:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name, txn=txn, create=False) for name in fmt.ALL_DBS}
            corrupt(Raw(txn, dbs))
    finally:
        env.close()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        return ledger.verify()


def check(workloads, tmp_path, engine_name, corrupt, expected):
    report = corrupted_report(workloads, tmp_path, engine_name, corrupt)
    assert report.problems == expected
    assert not report.ok


# --- one corruption per invariant, each with the exact report -------------------------------

HELD = "the members' buckets and lots of that issue month hold"  # verify's cohort checks (§19)
# bob's clawbacks 50 + 150 and alice's -40: 240 taken back, bob's debt paid (100) in between.
TAKEN = "cohort counters: taken back 240, the journal's clawbacks and negative adjustments less the members' debt"

# Each case: (corruption, the exact problems verify() must report).
CASES = {
    # A member's balance is the sum of its entries (§7); bucket and expiry total moved with it.
    "member balance": (
        lambda raw: (raw.member("bob", balance=31, buckets=[(T_2026_07_01, 31)]), raw.expiry(T_2026_07_01, 154)),
        ["member 'bob': balance 31 but its entries sum to 30",
         f"cohort 2026-05: counters leave 153 points, {HELD} 154"],
    ),
    # seq is gapless (§7): the last entry moved from 12 to 13, with everything naming it.
    "seq gap": (
        lambda raw: (
            raw.put(fmt.DB_JOURNAL, fmt.seq_key(13), raw.get(fmt.DB_JOURNAL, fmt.seq_key(12))),
            raw.delete(fmt.DB_JOURNAL, fmt.seq_key(12)),
            raw.member("carol", last_seq=13), raw.order("o-6", seq=13),
        ),
        ["journal: seq 13 follows 11 (gap or disorder)"],
    ),
    # Each entry's balance is the running total of the member's entries.
    "running total in an entry": (
        lambda raw: raw.entry(3, balance=401),
        ["journal seq 3: balance 401 but the member's entries sum to 400"],
    ),
    # The buckets minus the debt are the balance.
    "bucket sum": (
        lambda raw: (raw.member("carol", buckets=[(T_2026_07_01, 124), (T_2026_08_01, 10)]),
                     raw.expiry(T_2026_07_01, 154)),
        ["member 'carol': buckets 134 minus debt 0 is not the balance 133",
         # May's points (carol 123 + bob 30) counted at commit time: the cohort check sees it too (§19).
         f"cohort 2026-05: counters leave 153 points, {HELD} 154"],
    ),
    # Buckets are sorted by instant, merged, positive.
    "bucket order": (
        lambda raw: raw.member("carol", buckets=[(T_2026_08_01, 10), (T_2026_07_01, 123)]),
        ["member 'carol': buckets not sorted, merged and positive: "
         "2026-08-01T00:00:00Z issued 2026-06: 10, 2026-07-01T00:00:00Z issued 2026-05: 123"],
    ),
    "buckets not merged": (
        lambda raw: raw.member("carol", buckets=[(T_2026_07_01, 100), (T_2026_07_01, 23), (T_2026_08_01, 10)]),
        ["member 'carol': buckets not sorted, merged and positive: "
         "2026-07-01T00:00:00Z issued 2026-05: 100, 2026-07-01T00:00:00Z issued 2026-05: 23, "
         "2026-08-01T00:00:00Z issued 2026-06: 10"],
    ),
    "empty bucket": (
        lambda raw: raw.member("carol", buckets=[(T_2026_07_01, 123), (T_2026_08_01, 10), (T_2026_09_01, 0)]),
        ["member 'carol': buckets not sorted, merged and positive: "
         "2026-07-01T00:00:00Z issued 2026-05: 123, 2026-08-01T00:00:00Z issued 2026-06: 10, "
         "2026-09-01T00:00:00Z issued 2026-07: 0"],
    ),
    # Debt only while no points are left (§15), never negative.
    "debt beside points": (
        lambda raw: (raw.member("bob", debt=5, buckets=[(T_2026_07_01, 35)]), raw.expiry(T_2026_07_01, 158)),
        ["member 'bob': debt 5 while holding 35 points in buckets",
         f"cohort 2026-05: counters leave 153 points, {HELD} 158",
         f"{TAKEN} 5 are 235"],
    ),
    "negative debt": (
        lambda raw: (raw.member("bob", debt=-5, buckets=[(T_2026_07_01, 25)]), raw.expiry(T_2026_07_01, 148)),
        ["member 'bob': debt -5 while holding 25 points in buckets",
         f"cohort 2026-05: counters leave 153 points, {HELD} 148",
         f"{TAKEN} -5 are 245"],
    ),
    # A negative debt without buckets (alice's balance is 0): caught by the sign alone, not only
    # beside points; the buckets minus the debt (0 + 5) then miss the balance as well.
    "negative debt without points": (
        lambda raw: raw.member("alice", debt=-5),
        ["member 'alice': buckets 0 minus debt -5 is not the balance 0",
         "member 'alice': debt -5 while holding 0 points in buckets",
         f"{TAKEN} -5 are 245"],
    ),
    # Counters per day.
    "day counter": (
        lambda raw: raw.day(T_2026_03_15, earned=601),
        ["day counters of 2026-03-15: earned 601 (journal 600)"],
    ),
    "day counter of a day without events": (
        lambda raw: raw.day(T_2026_03_16, purchases=1),
        ["day counters of 2026-03-16: purchases 1 (journal 0)"],
    ),
    # Counters per instant: the expiry totals are the buckets' sums.
    "expiry total": (
        lambda raw: raw.expiry(T_2026_07_01, 152),
        ["expiry totals at 2026-07-01T00:00:00Z: 152, the buckets hold 153"],
    ),
    "expiry total of an instant without buckets": (
        lambda raw: raw.expiry(T_2026_05_01, 5),
        ["expiry totals at 2026-05-01T00:00:00Z: 5, the buckets hold 0"],
    ),
    # All-time counters (100 + 200 + 300 + 123 + 100 + 10 = 833 earned) and the member count.
    "total earned": (
        lambda raw: raw.totals(earned=834),
        ["totals: earned 834, the journal says 833"],
    ),
    "member count": (
        lambda raw: raw.put(fmt.DB_META, fmt.META_MEMBER_COUNT, fmt.U64.pack(4)),
        ["meta: member count 4, the store holds 3"],
    ),
    # Lifetime figures of a member (bob: earned 300, redeemed 100, clawed back 200, adjusted +30).
    "lifetime earned": (
        lambda raw: raw.member("bob", earned=301), ["member 'bob': lifetime earned 301, the journal says 300"],
    ),
    "lifetime redeemed": (
        lambda raw: raw.member("bob", redeemed=99), ["member 'bob': lifetime redeemed 99, the journal says 100"],
    ),
    "lifetime expired": (
        lambda raw: raw.member("alice", expired=361),
        ["member 'alice': lifetime expired 361, the journal says 360"],
    ),
    "lifetime clawed back": (
        lambda raw: raw.member("bob", clawed_back=0),
        ["member 'bob': lifetime clawed back 0, the journal says 200"],
    ),
    "lifetime adjusted": (
        lambda raw: raw.member("bob", adjusted=-30), ["member 'bob': lifetime adjusted -30, the journal says 30"],
    ),
    # History links: each entry names the member's previous one; the record names the last.
    "history link": (
        lambda raw: raw.entry(6, previous=4),
        ["journal seq 6: links to 4, the member's previous entry is 5"],
    ),
    "member's last entry": (
        lambda raw: raw.member("bob", last_seq=7), ["member 'bob': last entry 7, the journal says 11"],
    ),
    "member without record": (
        lambda raw: (raw.delete(fmt.DB_MEMBERS, b"carol"), raw.expiry(T_2026_07_01, 30),
                     raw.expiry(T_2026_08_01, None), raw.put(fmt.DB_META, fmt.META_MEMBER_COUNT, fmt.U64.pack(2))),
        ["member 'carol': has entries but no record",
         f"cohort 2026-05: counters leave 153 points, {HELD} 30",
         f"cohort 2026-06: counters leave 10 points, {HELD} 0"],
    ),
    # Entries: the programme version must be one in force at the entry's time.
    "programme version": (
        lambda raw: raw.entry(1, version=2),
        ["journal seq 1: programme version 2, not one in force at 2026-03-15T00:00:00Z (1 versions stored)",
         # The cohort values (§19) counted seq 1's 100 points under the version it had at commit.
         "cohort values of day 2026-03-15, version 1: credited 600, the journal says 500",
         "cohort values of day 2026-03-15, version 2: credited 0, the journal says 100"],
    ),
    # Orders and refunds (§6): refunded = sum of refunds, clawed = sum of clawbacks = floor(P × R / A).
    "order refunded": (
        lambda raw: raw.order("o-2", refunded=19_000),
        ["cohort 2026-03: amount 40000, its orders less refunds are 41000",
         "order 'o-2': refunded 19000 of 20000, its refunds sum to 20000"],
    ),
    "order clawed back": (
        lambda raw: raw.order("o-2", clawed=199),
        ["order 'o-2': clawed back 199, its refunds' entries sum to 200"],
    ),
    "order amount": (
        lambda raw: raw.order("o-2", amount=20_001),
        ["cohort 2026-03: amount 40000, its orders less refunds are 40001",
         "order 'o-2': clawed back 200, floor(200 x 20000 / 20001) is 199"],
    ),
    "order names another entry": (
        lambda raw: raw.order("o-1", seq=3),
        ["order 'o-1': its entry 3 is EARN of 'o-3', not EARN of 'o-1'"],
    ),
    "order names no entry": (
        lambda raw: raw.order("o-1", seq=99),
        ["order 'o-1': its entry 99 is not in the journal"],
    ),
    "order time": (
        lambda raw: raw.order("o-4", time=T_2026_05_01 + 1),
        ["order 'o-4': time 1777593601, its entry 10 says 1777593600"],
    ),
    "order missing": (
        lambda raw: raw.delete(fmt.DB_ORDERS, b"o-5"),
        ["cohort 2026-05: amount 22345, its orders less refunds are 12345",
         "journal seq 11: EARN of order 'o-5', which has no record"],
    ),
    "order of an unknown category": (
        lambda raw: raw.order("o-1", category=7),
        ["order 'o-1': category code 7 is not in the dictionary"],
    ),
    "refund time": (
        lambda raw: raw.tail(fmt.DB_REFUNDS, fmt.REFUND_HEAD, "r-1", time=T_2026_03_25 + 1),
        ["refund 'r-1': time 1774396801, its entry 5 says 1774396800"],
    ),
    "refund amount": (
        lambda raw: raw.tail(fmt.DB_REFUNDS, fmt.REFUND_HEAD, "r-1", value=4_000),
        ["order 'o-2': refunded 20000 of 20000, its refunds sum to 19000"],
    ),
    "refund names another entry": (
        lambda raw: raw.tail(fmt.DB_REFUNDS, fmt.REFUND_HEAD, "r-1", seq=6),
        ["refund 'r-1': its entry 6 is CLAWBACK of 'r-2', not CLAWBACK of 'r-1'",
         "order 'o-2': refunded 20000 of 20000, its refunds sum to 15000"],
    ),
    "refund of an unknown order": (
        lambda raw: raw.tail(fmt.DB_REFUNDS, fmt.REFUND_HEAD, "r-1", name="o-9"),
        ["order 'o-2': refunded 20000 of 20000, its refunds sum to 15000",
         "refund 'r-1': refunds order 'o-9', which is not stored"],
    ),
    "refund missing, another naming its entry": (
        lambda raw: (raw.delete(fmt.DB_REFUNDS, b"r-2"), raw.tail(fmt.DB_REFUNDS, fmt.REFUND_HEAD, "r-1", seq=6)),
        ["refund 'r-1': its entry 6 is CLAWBACK of 'r-2', not CLAWBACK of 'r-1'",
         "order 'o-2': refunded 20000 of 20000, its refunds sum to 0",
         "journal seq 5: CLAWBACK of refund 'r-1', whose record names entry 6",
         "journal seq 6: CLAWBACK of refund 'r-2', which has no record"],
    ),
    "refund missing": (
        lambda raw: (raw.delete(fmt.DB_REFUNDS, b"r-2"), raw.order("o-2", refunded=5_000, clawed=50)),
        ["cohort 2026-03: amount 40000, its orders less refunds are 55000",
         "journal seq 6: CLAWBACK of refund 'r-2', which has no record"],
    ),
    # Redemptions and adjustments agree with their entries.
    "redemption points": (
        lambda raw: raw.tail(fmt.DB_REDEMPTIONS, fmt.REDEMPTION_HEAD, "rd-1", value=99),
        ["redemption 'rd-1': 99 points for 'bob' at 1773964800, its entry 4 says 100 for 'bob' at 1773964800"],
    ),
    "redemption names another entry": (
        lambda raw: raw.tail(fmt.DB_REDEMPTIONS, fmt.REDEMPTION_HEAD, "rd-1", seq=7),
        ["redemption 'rd-1': its entry 7 is ADJUST of 'adj-1', not REDEEM of 'rd-1'"],
    ),
    "redemption missing": (
        lambda raw: raw.delete(fmt.DB_REDEMPTIONS, b"rd-1"),
        ["journal seq 4: REDEEM of redemption 'rd-1', which has no record"],
    ),
    "adjustment member": (
        lambda raw: raw.tail(fmt.DB_ADJUSTMENTS, fmt.ADJUSTMENT_HEAD, "adj-2", name="bob"),
        ["adjustment 'adj-2': -40 points for 'bob' at 1775001600, its entry 8 says -40 for 'alice' at 1775001600"],
    ),
    "adjustment time": (
        lambda raw: raw.tail(fmt.DB_ADJUSTMENTS, fmt.ADJUSTMENT_HEAD, "adj-1", time=T_2026_04_01 - 1),
        ["adjustment 'adj-1': 30 points for 'bob' at 1775001599, its entry 7 says 30 for 'bob' at 1775001600"],
    ),
    "adjustment missing": (
        lambda raw: raw.delete(fmt.DB_ADJUSTMENTS, b"adj-1"),
        ["journal seq 7: ADJUST of adjustment 'adj-1', which has no record"],
    ),
    # The tier state (§4): spend never negative, a carried rank of the programme's one tier,
    # a tier year no earlier than the member's latest event (bob's last: 2026-05-02).
    "tier spend negative": (
        lambda raw: raw.member("bob", spend=-1),
        ["member 'bob': tier-year spend -1 is negative"],
    ),
    "carried tier rank": (
        lambda raw: raw.member("alice", carried=1),
        ["member 'alice': carried tier rank 1 is not a rank of the programme's tiers (0 to 0)"],
    ),
    "tier year behind its events": (
        lambda raw: raw.member("bob", tier_year=2025),
        ["member 'bob': tier year 2025, but it has an event in 2026"],
    ),
    # The category dictionary: both directions one bijection onto codes 0 … n−1.
    "category name of a code": (
        lambda raw: raw.put(fmt.DB_CATEGORY_NAMES, fmt.encode_category_code(1), b"w"),
        ["categories: 'y' has code 1, but code 1 names 'w'",
         "categories: code 1 names 'w', which has no code"],
    ),
    "category without code": (
        lambda raw: raw.delete(fmt.DB_CATEGORIES, b"z"),
        ["categories: code 2 names 'z', which has no code"],
    ),
    "code without category name": (
        lambda raw: raw.delete(fmt.DB_CATEGORY_NAMES, fmt.encode_category_code(2)),
        ["categories: 'z' has code 2, but code 2 names missing",
         "order 'o-4': category code 2 is not in the dictionary",
         "order 'o-6': category code 2 is not in the dictionary"],
    ),
    "category codes with a hole": (
        lambda raw: (raw.put(fmt.DB_CATEGORIES, b"z", fmt.encode_category_code(5)),
                     raw.delete(fmt.DB_CATEGORY_NAMES, fmt.encode_category_code(2)),
                     raw.put(fmt.DB_CATEGORY_NAMES, fmt.encode_category_code(5), b"z"),
                     raw.order("o-4", category=5), raw.order("o-6", category=5)),
        ["categories: codes [0, 1, 5] are not 0 to 2"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_names_the_corruption_and_where(workloads, tmp_path, engine_name, case):
    corrupt, expected = CASES[case]
    check(workloads, tmp_path, engine_name, corrupt, expected)


def test_the_workload_itself_is_clean(workloads, tmp_path, engine_name):
    assert corrupted_report(workloads, tmp_path, engine_name, lambda raw: None).problems == []


def test_an_entry_of_unknown_kind(workloads, tmp_path, engine_name):
    report = corrupted_report(workloads, tmp_path, engine_name, lambda raw: raw.entry(12, kind=9))
    # Carol's o-6 (+10) no longer counts as earned: named by the kind and by what depends on it.
    assert report.problems[0] == "journal seq 12: unknown kind 9"
    assert "member 'carol': lifetime earned 133, the journal says 123" in report.problems
    assert "order 'o-6': its entry 12 is kind 9 of 'o-6', not EARN of 'o-6'" in report.problems


def test_an_entry_whose_points_have_the_wrong_sign(workloads, tmp_path, engine_name):
    # bob's adj-1 (+30) relabelled a REDEEM: a redemption that adds points.
    report = corrupted_report(workloads, tmp_path, engine_name, lambda raw: raw.entry(7, kind=fmt.KIND_REDEEM))
    assert report.problems[0] == "journal seq 7: REDEEM of 30 points has the wrong sign"
    assert "member 'bob': lifetime redeemed 100, the journal says 70" in report.problems


def test_an_undecodable_entry_and_member(workloads, tmp_path, engine_name):
    def corrupt(raw):
        raw.put(fmt.DB_JOURNAL, fmt.seq_key(12), raw.get(fmt.DB_JOURNAL, fmt.seq_key(12))[:-1])
        raw.put(fmt.DB_MEMBERS, b"alice", raw.get(fmt.DB_MEMBERS, b"alice")[:-1])

    problems = corrupted_report(workloads, tmp_path, engine_name, corrupt).problems
    assert problems[0].startswith("journal seq 12: undecodable entry (")
    assert any(problem.startswith("member 'alice': undecodable record (") for problem in problems), problems


def test_the_report_stops_listing_after_a_hundred(workloads, tmp_path, engine_name):
    def corrupt(raw):
        for day in range(150):
            raw.day(T_2026_08_01 + day * DAY_S, purchases=1)

    problems = corrupted_report(workloads, tmp_path, engine_name, corrupt).problems
    assert len(problems) == 101
    assert problems[0] == "day counters of 2026-08-01: purchases 1 (journal 0)"
    assert problems[-1] == "... and 50 more problems"
