"""Group a `perf record` profile's self time by symbol into the stages of the write path.

    python benchmarks/perf_stages.py seq.data

Reads `perf report --no-children --sort dso,sym` of the given perf.data and sums each
symbol's share into the first group whose pattern matches it (Cython, CPython, libc,
liblmdb and kernel symbols; benchmarks/README.md, "Inside the stages"). A coarse map:
a CPython dict probe counts as member lookup wherever it came from (the call graph puts
most of them in resolve_chunk and the rest in overlay inserts).
"""

import re
import subprocess
import sys

GROUPS = (
    ("member lookup: resolve_chunk, member_of, dict probes",
     r"resolve_chunk|member_of|_Py_dict_lookup|dictkeys|unicodekeys|siphash|PyDict_GetItem$"),
    ("validation: ids, amounts, times, categories", r"_id_key|_clean_id|PyUnicode_AsUTF8|_int_of|category_of|validate"),
    ("pricing: rules, tiers", r"_Rules_price|tier_rank|_rules_for|select_program|expiry_instant|_year_of|civil"),
    ("member state: expire, credit, debit", r"MemberState|_due_points|_credit|_expire|_debit|_ExpiryDeltas|_deltas"),
    ("journal and order values, overlay inserts, results",
     r"_encode_entry|_encode_order|append_entry|mark_dirty|insertdict|PyDict_SetItem|PyBytes_FromString|_PyBytes"
     r"|PyList_Append|list_resize|apply_purchases|GC_UnTrack|PyTuple_New|_Batch_"),
    ("flush: sorting the overlays", r"_sorted|_keyed_items|_compare_items|msort|qsort"),
    ("flush: iterators, member record encoding", r"_Items|pl_pair|_encode_state|journal_items|member_items|sorted_items"),
    ("py-lmdb putmulti glue", r"cursor_put_multi|val_from_buffer|PyIter_Next|take_gil|drop_gil|pthread_mutex"
     r"|PyEval_SaveThread|PyEval_RestoreThread"),
    ("liblmdb: puts and commit", r"mdb"),
    ("kernel: page faults, the commit's writes", r"\[k\]"),
    ("freeing and cyclic GC", r"dealloc|_PyObject_Free|free_keys|visit_|gc_|subtype|_Py_Dealloc|PyObject_GC_Del"),
    ("allocation, memcpy", r"_PyObject_Malloc|memmove|memset|memcmp|malloc"),
)
LINE = re.compile(r"\s+([\d.]+)%\s+(\S+)\s+(\[[k.]\])\s+(.*)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    report = subprocess.run(["perf", "report", "-i", argv[0], "--no-children", "--sort", "dso,sym", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    totals = dict.fromkeys((name for name, _ in GROUPS), 0.0)
    other = []
    for line in report.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        share, symbol = float(match.group(1)), f"{match.group(3)} {match.group(4).strip()}"
        group = next((name for name, pattern in GROUPS if re.search(pattern, symbol)), None)
        if group is None:
            other.append((share, symbol))
        else:
            totals[group] += share
    for name, share in totals.items():
        print(f"{share:6.1f} %  {name}")
    print(f"{sum(share for share, _ in other):6.1f} %  other; largest: "
          + ", ".join(f"{symbol} {share}" for share, symbol in sorted(other, reverse=True)[:6]))


if __name__ == "__main__":
    main()
