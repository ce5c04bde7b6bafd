"""What the what-if replays, read from one snapshot of the ledger (§16, §17).

The journal is walked once, in seq order; only EARN, CLAWBACK, REDEEM and
ADJUST entries with time in the replay window become steps (an order's
amount, category and time come from its record). Everything kept across
batches is bounded by members, refunds and profiles, never by purchases: the
set of members seen, the orders some refund in the window will need, the
referrals and the profile changes.
"""

from .. import calendar
from ..store import format as fmt
from ..errors import StoreDamaged

KINDS_ROLLING = (fmt.KIND_REDEEM, fmt.KIND_ADJUST)  # recorded, not replayed: they still roll the tier year
HEAD = fmt.JOURNAL_HEAD
HEAD_SIZE = fmt.JOURNAL_HEAD.size
SEEN, KNOWN = 1, 2  # what the journal walk knows of a member (Source.batches)


class Batch:
    """One scratch transaction's worth of steps, in journal order.

    steps: ("purchases", first, end) ranges of the purchase columns, and
    ("refund", refund index), ("roll", member key, ref key, time), ("profile",
    member key, value) between them. ensure: (member key, year) of members the
    ledger already had, to create in the scratch before the steps (so their
    first replayed purchase pays no welcome bonus, §17); early_profiles:
    profile changes of members not yet in the replay, also applied first.
    """

    def __init__(self):
        self.steps = []
        self.ensure = []
        self.early_profiles = []
        # Purchases by column (what the engine takes, and what the tally needs): the
        # journal's while the batch is read, the orders' and the ids as text at finish.
        self.order_keys, self.member_keys = [], []
        self.order_ids, self.member_ids, self.amounts, self.categories, self.times = [], [], [], [], []
        self.category_numbers = []  # the category's number in Source.category_list
        self.recorded_points, self.recorded_versions = [], []
        self.recorded_bonus = {}  # purchase index -> BONUS points recorded after its EARN
        self.refunded_keys = {}  # purchase index -> order key, for orders a refund in the window needs
        # Refunds: (refund id, order id, amount, time), and what the tally needs.
        self.refunds = []
        self.refund_order_keys, self.refund_points, self.refund_versions = [], [], []
        self._run_start = 0

    def __len__(self):
        return len(self.times)

    def close_run(self):
        if self._run_start < len(self.times):
            self.steps.append(("purchases", self._run_start, len(self.times)))
        self._run_start = len(self.times)

    def finish(self, source):
        """The columns the engine and the tally take: the orders' amounts and categories looked
        up, the ids decoded in one go (no id holds a NUL, §2)."""
        self.close_run()
        if not self.order_keys:
            return
        get, orders_db = source.txn.get, source.dbs[fmt.DB_ORDERS]
        orders = [get(order_key, None, orders_db) for order_key in self.order_keys]
        if None in orders:
            raise StoreDamaged(f"{source.store.path}: an EARN entry names an order the orders do not hold")
        amount_of, code_at = fmt.I64.unpack_from, fmt.ORDER_HEAD.size
        self.amounts = [amount_of(order)[0] for order in orders]
        categories = source.categories
        found = [categories.get(order[code_at:]) or source.category(order[code_at:]) for order in orders]
        self.categories = [category[0] for category in found]
        self.category_numbers = [category[1] for category in found]
        self.order_ids = b"\0".join(self.order_keys).decode("utf-8").split("\0")
        self.member_ids = b"\0".join(self.member_keys).decode("utf-8").split("\0")
        self.order_keys = self.member_keys = None

    def appenders(self):
        return (self.order_keys.append, self.member_keys.append, self.times.append,
                self.recorded_points.append, self.recorded_versions.append)

    def add_step(self, step):
        self.close_run()
        self.steps.append(step)


class Source:
    """The replay's input from a read transaction: batches, referrals, programme versions."""

    def __init__(self, store, txn, start_s, to_s):
        self.store, self.txn, self.dbs = store, txn, store.dbs
        self.start_s, self.to_s = start_s, to_s
        self.categories = {}  # category code as an order stores it -> (name, number)
        self.category_list = []  # names by number
        self.refunded_orders = self._refunded_orders()
        self.referrals = self._referrals()
        self.referrers = {record[3]: record[2] for _, record in self.referrals}  # referee -> referrer
        self.profiles = self._profiles()
        self.last_seq = store.last_seq(txn)

    # --- what is read once, before the journal ------------------------------------------

    def program_records(self):
        """[(effective_from_s, canonical document bytes)] of every version, in order."""
        return [(fmt.PROGRAM_HEAD.unpack_from(value)[0], bytes(value[fmt.PROGRAM_HEAD.size:]))
                for _, value in self.txn.cursor(db=self.dbs[fmt.DB_PROGRAMS])]

    def _refunded_orders(self):
        """The orders a refund in the window will claw back: their tiers and category are kept."""
        orders = set()
        for _, value in self.txn.cursor(db=self.dbs[fmt.DB_REFUNDS]):
            (_, time_s, _), order_key, _ = fmt.decode_tail(fmt.REFUND_HEAD, value)
            if self.start_s <= time_s < self.to_s:
                orders.add(order_key)
        return orders

    def _referrals(self):
        """[(referral key, record)] open at the replay's start or registered during it (§17)."""
        db = self.dbs.get(fmt.DB_REFERRALS)
        if db is None:
            return []
        found = []
        for key, value in self.txn.cursor(db=db):
            record = fmt.decode_referral(value)
            settled_seq, order_key = record[1], record[4]
            if settled_seq:
                order = self.txn.get(order_key, db=self.dbs[fmt.DB_ORDERS])
                if order is None or fmt.decode_order(order)[1] < self.start_s:
                    continue  # settled before the replay: it pays nothing in it
            found.append((bytes(key), record))
        return found

    def _profiles(self):
        """[(first seq it applies to, member key, value)] of every profile change, by seq."""
        db = self.dbs.get(fmt.DB_PROFILES)
        if db is None:
            return []
        changes = []
        for key, value in self.txn.cursor(db=db):
            member_key = bytes(key[1:1 + key[0]])
            seq = fmt.PROFILE_SEQ.unpack_from(key, 1 + key[0])[0]
            changes.append((seq, member_key, bytes(value)))
        changes.sort(key=lambda change: change[0])
        return changes

    # --- the journal ----------------------------------------------------------------------

    def category(self, code_bytes):
        """(name, number) of a category code as the order stores it; numbered in order of first use."""
        code = fmt.decode_category_code(code_bytes)
        value = self.txn.get(fmt.encode_category_code(code), db=self.dbs[fmt.DB_CATEGORY_NAMES])
        found = self.categories[code_bytes] = (bytes(value).decode("utf-8"), len(self.category_list))
        self.category_list.append(found[0])
        return found

    def batches(self, size):
        """Batches of at most `size` purchases, in journal order; each yielded with the last seq read.

        The loop is the what-if's own cost on top of the engine's (a few microseconds a
        purchase), hence the local names and the EARN case first.
        """
        txn, dbs = self.txn, self.dbs
        orders_db, refunds_db = dbs[fmt.DB_ORDERS], dbs[fmt.DB_REFUNDS]
        start_s, to_s = self.start_s, self.to_s
        # member key -> SEEN (it has an EARN: its next purchase did not create it) or KNOWN (the
        # replay has it, created or ensured); absent: its next EARN is the one that creates it.
        members = {}
        members_get = members.get
        profiles, next_profile = self.profiles, 0
        next_profile_seq = profiles[0][0] if profiles else None
        referrers, refunded_orders = self.referrers, self.refunded_orders
        unpack, u64, year_of = HEAD.unpack_from, fmt.U64.unpack, calendar.year_of
        kind_earn, kind_bonus, kind_expire, kind_clawback = (
            fmt.KIND_EARN, fmt.KIND_BONUS, fmt.KIND_EXPIRE, fmt.KIND_CLAWBACK)
        batch = Batch()
        add_order, add_member, add_time, add_points, add_version = batch.appenders()
        count = 0
        last_purchase = None  # the batch index of the purchase the next BONUS entries belong to
        for key, value in txn.cursor(db=dbs[fmt.DB_JOURNAL]):
            if next_profile_seq is not None and next_profile_seq <= u64(key)[0]:
                seq = u64(key)[0]
                while next_profile_seq is not None and next_profile_seq <= seq:
                    _, member_key, birthday = profiles[next_profile]
                    next_profile += 1
                    next_profile_seq = profiles[next_profile][0] if next_profile < len(profiles) else None
                    if members_get(member_key) == KNOWN:
                        batch.add_step(("profile", member_key, birthday))
                    else:
                        batch.early_profiles.append((member_key, birthday))
            kind, points, _, time_s, version, _, member_length, ref_length = unpack(value)
            if kind == kind_earn:
                member_end = HEAD_SIZE + member_length
                member_key = value[HEAD_SIZE:member_end]
                state = members_get(member_key)
                if not start_s <= time_s < to_s:
                    if state is None:
                        members[member_key] = SEEN
                    last_purchase = None
                    continue
                if count >= size:
                    batch.finish(self)
                    yield batch, u64(key)[0] - 1
                    batch = Batch()
                    add_order, add_member, add_time, add_points, add_version = batch.appenders()
                    count = 0
                if state != KNOWN:
                    members[member_key] = KNOWN
                    if state == SEEN:  # the ledger had it before: no welcome bonus in the replay
                        batch.ensure.append((member_key, year_of(time_s)))
                    referrer = referrers.get(member_key)
                    if referrer is not None and members_get(referrer) != KNOWN:
                        members[referrer] = KNOWN
                        batch.ensure.append((referrer, year_of(time_s)))
                ref_key = value[member_end:member_end + ref_length]
                if ref_key in refunded_orders:
                    batch.refunded_keys[count] = ref_key
                last_purchase = count
                count += 1
                add_order(ref_key)
                add_member(member_key)
                add_time(time_s)
                add_points(points)
                add_version(version)
                continue
            if kind == kind_bonus:
                if last_purchase is not None:
                    batch.recorded_bonus[last_purchase] = batch.recorded_bonus.get(last_purchase, 0) + points
                continue
            if kind == kind_expire:
                continue  # between a purchase's EARN and its referrer's BONUS (§17)
            last_purchase = None
            if not start_s <= time_s < to_s:
                continue
            member_end = HEAD_SIZE + member_length
            member_key = value[HEAD_SIZE:member_end]
            if kind == kind_clawback:
                refund_key = value[member_end:member_end + ref_length]
                (amount, _, _), order_key, _ = fmt.decode_tail(fmt.REFUND_HEAD, txn.get(refund_key, db=refunds_db))
                order_time = fmt.decode_order(txn.get(order_key, db=orders_db))[1]
                if not start_s <= order_time < to_s:
                    continue  # its purchase is not replayed: skipped on both sides (§17)
                batch.add_step(("refund", len(batch.refunds)))
                batch.refunds.append((refund_key.decode("utf-8"), order_key.decode("utf-8"), amount, time_s))
                batch.refund_order_keys.append(order_key)
                batch.refund_points.append(-points)
                batch.refund_versions.append(version)
            elif kind in KINDS_ROLLING and members_get(member_key) == KNOWN:
                batch.add_step(("roll", member_key, value[member_end:member_end + ref_length], time_s))
        batch.finish(self)
        yield batch, self.last_seq
