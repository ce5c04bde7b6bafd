"""The README's IFRS 15 walk-through (IE267-IE270) runs as written and prints what it shows."""

from pathlib import Path

from test_cli import run, scratch_cache  # noqa: F401 (the module's scratch $XDG_CACHE_HOME)

README = Path(__file__).resolve().parent.parent / "README.md"


def section():
    return README.read_text(encoding="utf-8").split("## Revenue under IFRS 15 / ASC 606", 1)[1].split("\n## ", 1)[0]


def block(text, language):
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readme_ifrs_example_prints_its_figures(tmp_path):
    text = section()
    (tmp_path / "ifrs-programme.json").write_text(block(text, "json"), encoding="utf-8")
    (tmp_path / "ifrs-sales.csv").write_text(block(text, "csv"), encoding="utf-8")
    commands, expected = [], {}
    for line in block(text, "console").splitlines():
        if line.startswith("$ "):
            commands.append(line[2:].split())
            expected[len(commands) - 1] = []
        else:
            expected[len(commands) - 1].append(line)
    assert len(commands) == 8
    for index, command in enumerate(commands):
        assert command[0] == "pointsledger"
        completed = run(*command[1:], cwd=tmp_path, check=0)
        printed = completed.stdout.splitlines()
        # A line ending in "…" stands for one whose end varies (the ingest's timing).
        assert [line[:len(want) - 1] if want.endswith("…") else line
                for line, want in zip(printed, expected[index])] == [
            want[:-1] if want.endswith("…") else want for want in expected[index]], command
        assert len(printed) == len(expected[index]), command
    # The standard's figures are among them.
    printed = "\n".join(sum(expected.values(), []))
    for figure in ("8,675.80", "4,109.59", "3,492.92", "4,566.21", "1,073.29"):
        assert figure in printed
