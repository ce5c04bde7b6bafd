"""Every limit of the ledger, in one place, units last.

The relations between limits are checked at import, so a change that breaks
one fails loudly instead of silently overflowing somewhere deep in the engine.
"""

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

# §2 units and inputs.
amount_minor_min = 1
amount_minor_max = 10**12
time_s_min = 946684800  # 2000-01-01T00:00:00Z
time_s_max_exclusive = 4102444800  # 2100-01-01T00:00:00Z
id_bytes_min = 1
id_bytes_max = 64
category_bytes_min = 1
category_bytes_max = 32
multiplier_bp_min = 0
multiplier_bp_max = 1_000_000  # 100.0000
basis_points_per_unit = 10_000
reason_bytes_max = 256

# §3 programme.
earn_value_min = 1
earn_value_max = 10**6
tiers_max = 64  # tier ranks fit a 64-bit filter mask
promotions_max = 64  # active promotions are tracked as a 64-bit mask
tier_name_bytes_max = 32
expiry_months_max = 1200
program_document_bytes_max = 1 << 20
program_document_depth_max = 32  # nesting of objects and arrays; the schema needs 4
currency_length = 3

# §17 engagement rules.
bonus_points_max = 10**9  # welcome, referral and milestone bonuses
pending_days_max = 365
milestones_max = 64
milestone_purchases_max = 10**6
milestone_spend_minor_max = 10**15
referral_min_purchase_minor_max = 10**12

# Promotion times may name 2100-01-01 itself (§15), one past the event range.
promotion_time_s_max = time_s_max_exclusive

# Store.
# Category codes are two bytes below 2^16 and four bytes from there on
# (store_format), so the dictionary holds up to 2^32 - 1 names: at 32 bytes a
# name that is about 400 GB of dictionary, far past any real catalogue or any
# client's patience. Only this many are kept in memory at once.
categories_max = (1 << 32) - 1
category_cache_entries_max = 1 << 17
profile_cache_entries_max = 1 << 20  # members' latest birthdays kept in memory (§17)
# A batch of at least this many purchases reads the whole profiles and referees
# indexes once (engagement.prepare_lookups) when each holds at most
# lookup_scan_records_per_item records per purchase of the batch: the scan costs
# about what that many per-member lookups would.
lookup_scan_items_min = 1_000
lookup_scan_records_per_item = 4
batch_items_max = 1_000_000
history_limit_max = 10_000
journal_limit_max = 100_000
map_size_initial_bytes = 1 << 30
map_size_growth_bytes = 1 << 30
max_dbs = 32
max_readers = 1024  # a slot per live read transaction; the service runs many

# Service (the service's tuning defaults are in service/defaults.py).
ingest_streams_max = 8  # concurrent IngestPurchases streams; one more is RESOURCE_EXHAUSTED
# Request bytes of stream batches read and not yet answered, all streams together. A stream
# starts reading its next batch only if these bytes, plus the reads under way (each counted at
# the size of the latest batch), leave room for one more batch of that size; otherwise it
# waits (HTTP/2 flow control then holds its client back). A new stream that arrives while the
# total is at the limit is RESOURCE_EXHAUSTED. The guess can be short only when batch sizes
# change; then the total exceeds the limit by at most one message per stream.
ingest_bytes_in_flight_max = 64 << 20
journal_followers_max = 1_000  # concurrent ReadJournal calls with follow; one more is RESOURCE_EXHAUSTED
journal_tail_entries_max = 20_000  # newest entries kept in memory for followers (see JournalTail)

# A bucket whose points never expire sorts after every real instant.
never_expires_s = INT64_MAX

assert id_bytes_max < 256, "id lengths are stored in one byte"
assert category_bytes_max < 256, "category lengths are stored in one byte"
assert tiers_max <= 64 and promotions_max <= 64, "filters are 64-bit masks"
assert categories_max <= (1 << 32), "category codes 0 .. categories_max - 1 are stored in at most four bytes"
assert amount_minor_max * earn_value_max <= INT64_MAX, (
    "amount x earn.points must fit int64 before the multipliers apply"
)
assert time_s_max_exclusive < never_expires_s
