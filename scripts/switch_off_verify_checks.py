"""Switch off each check of verify() in turn and see a test fail (issue 10, item 3).

    python scripts/switch_off_verify_checks.py [pytest file ...]

Replaces one `problems.add(` call of src/pointsledger/verify.py at a time by a no-op,
runs the given test files (default: DEFAULT_TEST_FILES, Python engine only)
and reports, per check, whether a test caught it. verify.py is restored afterwards,
whatever happens. Exit 1 when some check could be switched off unnoticed.
"""

import pathlib
import re
import subprocess
import sys

# The files whose corruption tests cover verify(): the core records, the engagement records, the cohorts.
DEFAULT_TEST_FILES = ["tests/test_verify_corruption.py", "tests/test_engagement.py", "tests/test_revenue.py"]
VERIFY = pathlib.Path(__file__).resolve().parent.parent / "src" / "pointsledger" / "verify.py"


def main(test_files):
    original = VERIFY.read_text()
    sites = [match.start() for match in re.finditer(r"problems\.add\(", original)]
    survivors = []
    try:
        for start in sites:
            VERIFY.write_text(original[:start] + "(lambda *_: None)(" + original[start + len("problems.add("):])
            line = original[:start].count("\n") + 1
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                   *test_files, "-k", "python"], capture_output=True, text=True)
            print(f"verify.py:{line}: {'caught' if done.returncode else 'NOT CAUGHT'}", flush=True)
            if done.returncode == 0:
                survivors.append(line)
    finally:
        VERIFY.write_text(original)
    print(f"{len(sites) - len(survivors)} of {len(sites)} checks caught when switched off")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_TEST_FILES))
