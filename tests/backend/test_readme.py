"""The README's Python blocks run, in order, on the backend in KERAS_BACKEND, and print what the
README says they print, so the README cannot drift from the library.

A block right after the line `<!-- not run by the tests: <why> -->` is skipped (it needs a GPU's
time or several devices). A block with a comment `# expected: name lo-hi, name lo-hi` prints a
dict last, and each named value must lie in its range (the random streams differ by backend).
"""

import ast
import contextlib
import io
import pathlib
import re

import keras

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
SKIP_MARK = "<!-- not run by the tests:"


def readme_blocks():
    """`(line, code, skipped)` for each Python block of the README, in order."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        previous = text[:match.start()].rstrip().splitlines()[-1]
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1),
                       previous.startswith(SKIP_MARK)))
    return blocks


def expected_ranges(code):
    """`{name: (lo, hi)}` from the block's `# expected:` comment, if it has one."""
    match = re.search(r"^# expected: (.+)$", code, re.M)
    if not match:
        return {}
    ranges = {}
    for item in match.group(1).split(","):
        name, bounds = item.split()
        lo, _, hi = bounds.partition("-")
        ranges[name] = (float(lo), float(hi or lo))
    return ranges


def last_printed_dict(output):
    line = output.strip().splitlines()[-1]
    line = re.sub(r"array\((\[.*?\])(?:, dtype=\w+)?\)", r"\1", line)  # NumPy arrays as lists
    return ast.literal_eval(line)


def test_the_readme_marks_what_it_skips_and_states_what_it_expects():
    blocks = readme_blocks()
    assert sum(skipped for _, _, skipped in blocks) <= 3, "most of the README must run"
    assert sum(bool(expected_ranges(code)) for _, code, _ in blocks) >= 2


def test_every_readme_block_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks save models and caches in the working folder
    namespace, ran = {}, 0
    for line, code, skipped in readme_blocks():
        if skipped:
            continue
        ran += 1
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README.md, block at line {line}", "exec"), namespace)
        ranges = expected_ranges(code)
        if ranges:
            values = last_printed_dict(printed.getvalue())
            for name, (lo, hi) in ranges.items():
                assert lo <= values[name] <= hi, (
                    f"README line {line}: {keras.backend.backend()} printed {name}={values[name]}, "
                    f"the README says {lo}-{hi}")
    assert ran >= 5
