"""The on-disk format: sub-database names, key encodings and value layouts.

Every layout is a `struct` format named once here; docs/design.md has the
table. Integers are big-endian so that integer keys sort numerically and so
that both engines (the Cython one writes these bytes by hand) agree byte for
byte. Variable-length strings follow the fixed part, each with a one-byte
length (ids are at most 64 bytes, limits.id_bytes_max).
"""

import struct

# Format 1: every category code is two bytes (the release before wide codes).
# Format 2: codes from 2^16 on are four bytes; the smaller ones keep their two
# bytes, so a format-1 store is already a valid format-2 store. A store stays
# format 1 until the commit that allocates its first wide code writes 2: a
# release that knows only format 1 refuses it from then on, and can still open
# every store that does not need wide codes.
FORMAT_VERSION_NARROW_CODES = 1
FORMAT_VERSION_WIDE_CODES = 2
# Format 3: engagement records (§14): member records of version 2, referrals,
# profiles and bonus counters. A store becomes format 3 at the commit that
# writes its first such record; until then the release before can still open it.
FORMAT_VERSION_ENGAGEMENT = 3
# Format 4: lots by issue month (§19): member records of version 3 and 4 (each
# bucket and pending lot carries its issue month), the cohort counters and the
# redemption estimates. A store of format 1-3 is upgraded once, at its first
# writable open (revenue_upgrade.py); the release before refuses it from then on.
FORMAT_VERSION_LOTS = 4
# Format 5: the cohort counters' points by programme version (cohort_values), so
# revenue values each credit and each taking at the point value of the version of
# the entry (§19). A store of format 1-4 is upgraded once, at its first writable
# open (revenue_upgrade.py); the release before refuses it from then on.
FORMAT_VERSION_VALUES = 5
FORMAT_VERSIONS_READ = (
    FORMAT_VERSION_NARROW_CODES, FORMAT_VERSION_WIDE_CODES, FORMAT_VERSION_ENGAGEMENT, FORMAT_VERSION_LOTS,
    FORMAT_VERSION_VALUES,
)
FORMAT_VERSION = FORMAT_VERSION_NARROW_CODES  # what a new store starts as

# Sub-databases of the one LMDB environment.
DB_META = b"meta"
DB_PROGRAMS = b"programs"
DB_MEMBERS = b"members"
DB_JOURNAL = b"journal"
DB_ORDERS = b"orders"
DB_REFUNDS = b"refunds"
DB_REDEMPTIONS = b"redemptions"
DB_ADJUSTMENTS = b"adjustments"
DB_CATEGORIES = b"categories"
DB_CATEGORY_NAMES = b"category_names"
DB_DAYS = b"days"
DB_EXPIRY = b"expiry"
# Engagement (§14, format 3). A store of an earlier format may lack them; a
# read-only open then reads them as empty.
DB_PROFILES = b"profiles"
DB_REFERRALS = b"referrals"
DB_REFEREES = b"referees"
DB_BONUS_DAYS = b"bonus_days"
ENGAGEMENT_DBS = (DB_PROFILES, DB_REFERRALS, DB_REFEREES, DB_BONUS_DAYS)
# Revenue (§19, format 4): cohort counters and redemption estimates.
DB_COHORTS = b"cohorts"
DB_ESTIMATES = b"estimates"
DB_COHORT_VALUES = b"cohort_values"  # format 5
REVENUE_DBS = (DB_COHORTS, DB_ESTIMATES, DB_COHORT_VALUES)
OPTIONAL_DBS = ENGAGEMENT_DBS + REVENUE_DBS  # absent from stores of earlier formats
ALL_DBS = (
    DB_META, DB_PROGRAMS, DB_MEMBERS, DB_JOURNAL, DB_ORDERS, DB_REFUNDS,
    DB_REDEMPTIONS, DB_ADJUSTMENTS, DB_CATEGORIES, DB_CATEGORY_NAMES, DB_DAYS, DB_EXPIRY,
) + ENGAGEMENT_DBS + REVENUE_DBS

# meta keys
META_FORMAT = b"format_version"
META_TOTALS = b"totals"
META_MEMBER_COUNT = b"member_count"
META_COMMIT_COUNT = b"commit_count"
META_BONUS_TOTAL = b"bonus_total"  # I64: every BONUS entry's points, all time
META_RESERVED = (META_FORMAT, META_TOTALS, META_MEMBER_COUNT, META_COMMIT_COUNT, META_BONUS_TOTAL)
# A stream consumer's position (SPEC §18), one key per stream: b"stream:" + the stream's name;
# the value is STREAM_POSITION (last applied stream sequence, shard, shard count).
META_STREAM_PREFIX = b"stream:"

# Journal kinds (§7). BONUS is reserved for the engagement rules (§14).
KIND_EARN = 1
KIND_CLAWBACK = 2
KIND_REDEEM = 3
KIND_ADJUST = 4
KIND_EXPIRE = 5
KIND_BONUS = 6
KIND_NAMES = {
    KIND_EARN: "EARN", KIND_CLAWBACK: "CLAWBACK", KIND_REDEEM: "REDEEM",
    KIND_ADJUST: "ADJUST", KIND_EXPIRE: "EXPIRE", KIND_BONUS: "BONUS",
}

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
I64 = struct.Struct(">q")
I32 = struct.Struct(">i")
STREAM_POSITION = struct.Struct(">QII")  # last applied stream sequence, shard, shard count

# journal: seq (U64 key) -> kind, points, balance, time, program_version,
# member's previous entry seq (0 = none), member id length, ref id length,
# then member id and ref id bytes. The previous-entry link makes history a
# walk instead of a second random insert per entry.
JOURNAL_HEAD = struct.Struct(">BqqqIQBB")

# members: member id -> record version, balance, debt, tier year, spend in the
# tier year, carried tier rank, lifetime earned, redeemed, expired, clawed back,
# adjusted (net), last entry seq, bucket count; then the buckets as
# (expiry instant, points), soonest first; never-expiring sorts last.
MEMBER_RECORD_VERSION = 1
MEMBER_HEAD = struct.Struct(">BqqiqiqqqqqQI")
BUCKET = struct.Struct(">qq")
# Version 2 (format 3): the same head and buckets, then the member's engagement
# state (see engagement.Engagement): lifetime bonus points, the tier year its
# milestone counts belong to, purchases in that year, the milestone ids reached
# in it (count, then each as length + bytes), then its pending lots (count,
# then each as release instant, expiry instant, points, credit seq, order id
# length + bytes). Members without engagement state keep version 1.
MEMBER_RECORD_VERSION_ENGAGED = 2
ENGAGEMENT_HEAD = struct.Struct(">qiqB")
LOT_COUNT = struct.Struct(">I")
LOT_HEAD = struct.Struct(">qqqQB")
# Versions 3 and 4 (format 4, §19): versions 1 and 2 with each bucket keyed by
# (expiry instant, issue month), in that order, and each lot carrying its issue
# month. The issue month is year * 12 + month - 1 of the credit's UTC time.
MEMBER_RECORD_VERSION_LOTS = 3
MEMBER_RECORD_VERSION_LOTS_ENGAGED = 4
BUCKET_MONTH = struct.Struct(">qqi")  # expiry instant, points, issue month
LOT_HEAD_MONTH = struct.Struct(">qqqQiB")  # LOT_HEAD with the issue month before the order id length

# orders: order id -> amount, time, EARN entry seq, refunded so far, clawed back
# so far, then the category code (two or four bytes, see encode_category_code).
# Member, points and balance live in the EARN entry.
ORDER_HEAD = struct.Struct(">qqQqq")
# refunds: refund id -> amount, time, CLAWBACK entry seq, order id length; order id
REFUND_HEAD = struct.Struct(">qqQB")
# redemptions: redemption id -> points, time, REDEEM entry seq, member id length; member id
REDEMPTION_HEAD = struct.Struct(">qqQB")
# adjustments: adjustment id -> points, time, ADJUST entry seq, member id length;
# member id, then the reason (the rest of the value)
ADJUSTMENT_HEAD = struct.Struct(">qqQB")

# days: day number since 1970-01-01 (I32 key) -> counters of events on that day;
# meta totals: the same counters for all time.
COUNTERS = struct.Struct(">qqqqqqq")
COUNTER_FIELDS = (
    "earned", "adjusted_positive", "adjusted_negative", "clawed_back",
    "redeemed", "expired", "purchases",
)
COUNTER_EARNED, COUNTER_ADJUSTED_POSITIVE, COUNTER_ADJUSTED_NEGATIVE = 0, 1, 2
COUNTER_CLAWED_BACK, COUNTER_REDEEMED, COUNTER_EXPIRED, COUNTER_PURCHASES = 3, 4, 5, 6

# cohorts (§19): issue month (I32), event day (I32) -> counters of the points of
# that issue month changed by events of that day: purchase amounts (less
# refunds, in minor units), points credited, redeemed, taken back (clawbacks,
# negative adjustments, and credits that paid a debt), expired.
COHORT_KEY = struct.Struct(">ii")
COHORT = struct.Struct(">qqqqq")
COHORT_AMOUNT, COHORT_CREDITED, COHORT_REDEEMED, COHORT_TAKEN_BACK, COHORT_EXPIRED = range(5)
COHORT_FIELDS = ("amount_minor", "credited", "redeemed", "taken_back", "expired")
# cohort_values (§19, format 5): issue month (I32), event day (I32), programme
# version (U32; 0 for entries made without a programme) -> points of that issue
# month credited, and taken back, by entries of that day applied under that
# version. Per (month, day) they sum to the cohorts row's credited and taken_back.
COHORT_VALUE_KEY = struct.Struct(">iiI")
COHORT_VALUE = struct.Struct(">qq")
# estimates: estimate id -> effective_from (I64), rate in basis points (U32),
# serial (U32: 1, 2, ... in the order they were set; effective_from never goes back).
ESTIMATE = struct.Struct(">qII")

# bonus_days: day number (I32 key) -> points issued as BONUS that day (I64).
# profiles: member id length (one byte), member id, first journal seq the
# profile applies to (U64) -> birthday month and day (two bytes; empty: cleared).
PROFILE_SEQ = U64
# referrals: referral id -> registration time, settling purchase's EARN seq (0
# while open), referrer, referee and settling order id lengths; then those ids.
REFERRAL_HEAD = struct.Struct(">qQBBB")
# referees: referee member id -> the referral id that names it.

# expiry: instant (I64 key) -> points of every member's bucket with that instant.
EXPIRY_TOTAL = I64

# programs: version (U32 key) -> effective_from, then canonical JSON.
PROGRAM_HEAD = I64

# categories: name -> code; category_names: code -> name. A code below 2^16 is
# two bytes (U16), a larger one four (U32): the length tells which. Ledgers with
# fewer than 65,536 categories (nearly all) keep two-byte codes in every order,
# and the orders written by format 1 never need rewriting.
CATEGORY_CODE_NARROW = struct.Struct(">H")
CATEGORY_CODE_WIDE = struct.Struct(">I")
NARROW_CODES = 1 << 16  # codes below this are two bytes


def encode_category_code(code):
    return (CATEGORY_CODE_NARROW if code < NARROW_CODES else CATEGORY_CODE_WIDE).pack(code)


def decode_category_code(value):
    if len(value) == CATEGORY_CODE_NARROW.size:
        return CATEGORY_CODE_NARROW.unpack(value)[0]
    if len(value) == CATEGORY_CODE_WIDE.size:
        return CATEGORY_CODE_WIDE.unpack(value)[0]
    raise ValueError(f"a category code of {len(value)} bytes (2 or 4 expected)")


def encode_order(amount_minor, time_s, earn_seq, refunded_minor, clawed_back, category_code):
    return (ORDER_HEAD.pack(amount_minor, time_s, earn_seq, refunded_minor, clawed_back)
            + encode_category_code(category_code))


def decode_order(value):
    """(amount, time, EARN seq, refunded so far, clawed back so far, category code)."""
    return ORDER_HEAD.unpack_from(value) + (decode_category_code(value[ORDER_HEAD.size:]),)


def seq_key(seq):
    return U64.pack(seq)


def encode_entry(kind, points, balance, time_s, program_version, previous_seq, member_key, ref_key):
    return (
        JOURNAL_HEAD.pack(kind, points, balance, time_s, program_version, previous_seq,
                          len(member_key), len(ref_key))
        + member_key + ref_key
    )


def decode_entry(value):
    kind, points, balance, time_s, version, previous_seq, member_length, ref_length = (
        JOURNAL_HEAD.unpack_from(value)
    )
    start = JOURNAL_HEAD.size
    member_key = bytes(value[start:start + member_length])
    ref_key = bytes(value[start + member_length:start + member_length + ref_length])
    if start + member_length + ref_length != len(value):
        raise ValueError(f"journal entry of {len(value)} bytes has a bad length")
    return kind, points, balance, time_s, version, previous_seq, member_key, ref_key


def encode_tail(head, head_values, name_key, rest=b""):
    return head.pack(*head_values, len(name_key)) + name_key + rest


def decode_tail(head, value):
    """(fixed fields..., name bytes, rest bytes) of a head + one-byte-length name layout."""
    fields = head.unpack_from(value)
    start = head.size
    name_length = fields[-1]
    name = bytes(value[start:start + name_length])
    return fields[:-1], name, bytes(value[start + name_length:])


def profile_prefix(member_key):
    return bytes((len(member_key),)) + member_key


def encode_referral(time_s, settled_seq, referrer_key, referee_key, order_key):
    return (REFERRAL_HEAD.pack(time_s, settled_seq, len(referrer_key), len(referee_key), len(order_key))
            + referrer_key + referee_key + order_key)


def decode_referral(value):
    """(time, settling EARN seq or 0, referrer key, referee key, settling order key or b"")."""
    time_s, seq, referrer_length, referee_length, order_length = REFERRAL_HEAD.unpack_from(value)
    start = REFERRAL_HEAD.size
    referrer = bytes(value[start:start + referrer_length])
    start += referrer_length
    referee = bytes(value[start:start + referee_length])
    start += referee_length
    order = bytes(value[start:start + order_length])
    if start + order_length != len(value):
        raise ValueError(f"referral record of {len(value)} bytes has a bad length")
    return time_s, seq, referrer, referee, order
