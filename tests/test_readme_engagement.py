"""The README's engagement example runs as written and says what the ledger does."""

from pathlib import Path

import pointsledger

README = Path(__file__).resolve().parent.parent / "README.md"


def engagement_example():
    text = README.read_text(encoding="utf-8")
    return text.split("## Engagement rules", 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_the_readme_engagement_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(engagement_example(), "README.md", "exec"), {})
    # What its comments say, read back from the ledger it wrote.
    with pointsledger.Ledger(tmp_path / "engaged-ledger", readonly=True) as ledger:
        alice = ledger.get_order("o-1").result
        assert (alice.points, alice.balance) == (100, 200)
        bob = ledger.get_order("o-2").result
        assert (bob.points, bob.balance) == (100, 450)
        balance = ledger.balance("alice", 1773619200)
        assert (balance.pending, balance.available, balance.next_release_s) == (700, 0, 1776124800)
        assert [(m.milestone_id, m.progress, m.target) for m in balance.milestones] == [
            ("ten-orders", 1, 10), ("big-spender", 10000, 100000)]
        assert ledger.get_referral("ref-1").order_id == "o-2"
        assert ledger.liability(1773619200).bonus == 950
