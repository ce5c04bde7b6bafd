"""The seeded "backfill" workload of SPEC §13.

N purchases over `members` members (skewed: a few members buy often), 8
categories, amounts 1 … 100,000 minor units (log-normal), times ascending over
two years from 2024-01-01; order ids sequential (`o000000000042`, sorting in
purchase order) or random 16-hex strings.

Rows are made in fixed blocks of `BLOCK_ROWS`, each from its own generator
seeded by (seed, block index). So the data depends only on (count, seed,
order_ids, members): `generate_backfill` and `iter_backfill_batches` give the
same rows whatever the batch size, and a 10 M-row backfill can be streamed in
batches without ever holding all of it.
"""

import numpy as np

START_TIME_S = 1704067200  # 2024-01-01T00:00:00Z
SPAN_S = 731 * 86_400  # two years: 2024 (a leap year) and 2025
MEMBERS_DEFAULT = 100_000
BLOCK_ROWS = 65_536

AMOUNT_MINOR_MIN = 1
AMOUNT_MINOR_MAX = 100_000
AMOUNT_MINOR_MEDIAN = 3_000  # a $30 basket
AMOUNT_SIGMA = 1.0  # log-normal spread: ~95 % of baskets between $4 and $210

# Purchases of member rank k are proportional to k ** -0.7: the top 1 % of
# members make ~23 % of purchases and the top 10 % ~49 %, as in retail loyalty
# data, while the least active of 100,000 members still buys ~3 times per 1 M.
MEMBER_SKEW_EXPONENT = 0.7

CATEGORIES = (
    "grocery", "electronics", "fashion", "home", "beauty", "sports", "toys", "gift_cards",
)
# Groceries are bought most often; gift cards least.
CATEGORY_WEIGHTS = (0.30, 0.10, 0.15, 0.12, 0.10, 0.08, 0.08, 0.07)

COLUMNS = ("order_ids", "member_ids", "amounts_minor", "categories", "times_s")


def member_id(member_number):
    return f"m{member_number:06d}"


def _member_tables(members, seed):
    """(cumulative rank weights, member id of each rank) for `members` members.

    Ranks are shuffled over member numbers so the busy members are spread over
    the key space instead of all sorting first.
    """
    weights = np.arange(1, members + 1, dtype=np.float64) ** -MEMBER_SKEW_EXPONENT
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    numbers = np.random.default_rng([seed, members, 0x6D656D]).permutation(members)
    names = np.array([member_id(int(number)) for number in numbers], dtype=object)
    return cumulative, names


def _block(block_index, row_start, row_stop, count, seed, order_ids, tables):
    """Rows [row_start, row_stop) of the workload, all from one block's generator."""
    cumulative, member_names = tables
    rng = np.random.default_rng([seed, block_index])
    rows = row_stop - row_start
    ranks = np.searchsorted(cumulative, rng.random(rows), side="right")
    ranks = np.minimum(ranks, len(member_names) - 1)  # guards a draw that rounds to 1.0
    amounts_minor = np.rint(rng.lognormal(np.log(AMOUNT_MINOR_MEDIAN), AMOUNT_SIGMA, rows))
    amounts_minor = np.clip(amounts_minor, AMOUNT_MINOR_MIN, AMOUNT_MINOR_MAX).astype(np.int64)
    category_codes = rng.choice(len(CATEGORIES), size=rows, p=CATEGORY_WEIGHTS)
    # Row i takes a random instant inside its own slot of SPAN_S / count seconds,
    # so times ascend across blocks without any block knowing its neighbours.
    slot_s = SPAN_S / count
    positions = np.arange(row_start, row_stop, dtype=np.float64) + rng.random(rows)
    times_s = START_TIME_S + np.floor(positions * slot_s).astype(np.int64)
    np.minimum(times_s, START_TIME_S + SPAN_S - 1, out=times_s)
    # Drawn last, so both order-id modes share every other column.
    if order_ids == "seq":
        order_id_list = [f"o{index:012d}" for index in range(row_start, row_stop)]
    elif order_ids == "rand":
        hex_text = rng.bytes(8 * rows).hex()
        order_id_list = [hex_text[at:at + 16] for at in range(0, 16 * rows, 16)]
    else:
        raise ValueError(f"order_ids must be 'seq' or 'rand', not {order_ids!r}")
    return {
        "order_ids": order_id_list,
        "member_ids": member_names[ranks].tolist(),
        "amounts_minor": amounts_minor,
        "categories": np.array(CATEGORIES, dtype=object)[category_codes].tolist(),
        "times_s": times_s,
    }


def _iter_blocks(count, seed, order_ids, members):
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if members < 1 or members > 1_000_000:
        raise ValueError(f"members must be 1 … 1,000,000 (6-digit ids), not {members}")
    tables = _member_tables(members, seed)
    for block_index, row_start in enumerate(range(0, count, BLOCK_ROWS)):
        row_stop = min(row_start + BLOCK_ROWS, count)
        yield _block(block_index, row_start, row_stop, count, seed, order_ids, tables)


def _concatenate(parts):
    joined = {}
    for name in COLUMNS:
        columns = [part[name] for part in parts]
        if isinstance(columns[0], np.ndarray):
            joined[name] = np.concatenate(columns)
        else:
            joined[name] = [value for column in columns for value in column]
    return joined


def _slice(block, start, stop):
    return {name: block[name][start:stop] for name in COLUMNS}


def generate_backfill(count, *, seed=1, order_ids="seq", members=MEMBERS_DEFAULT):
    """The whole workload as a dict of columns (see COLUMNS)."""
    return _concatenate(list(_iter_blocks(count, seed, order_ids, members)))


def iter_backfill_batches(count, batch_size, *, seed=1, order_ids="seq", members=MEMBERS_DEFAULT):
    """The same rows as generate_backfill, as dicts of columns of `batch_size` rows (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    pending = []  # slices of blocks waiting to fill the next batch
    pending_rows = 0
    for block in _iter_blocks(count, seed, order_ids, members):
        block_rows = len(block["order_ids"])
        taken = 0
        while taken < block_rows:
            take = min(batch_size - pending_rows, block_rows - taken)
            pending.append(_slice(block, taken, taken + take))
            pending_rows += take
            taken += take
            if pending_rows == batch_size:
                yield pending[0] if len(pending) == 1 else _concatenate(pending)
                pending, pending_rows = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else _concatenate(pending)
