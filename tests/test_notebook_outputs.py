"""The committed notebooks' outputs are clean: no terminal colour codes, no paths of the machine
that ran them, no stray values (a setup cell's bare string), and each says how it was run."""

import json
import pathlib
import re

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/usr/|site-packages|[A-Z]:\\\\)")


def outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            yield output["output_type"], "".join(text)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem[:2] for n in NOTEBOOKS])
def test_committed_outputs_are_clean(notebook):
    found = list(outputs(notebook))
    assert found, "commit the notebook with the outputs of its full-mode run"
    for kind, text in found:
        assert "\x1b[" not in text, f"colour codes in an output: {text[:200]!r}"
        assert not MACHINE_PATH.search(text), f"a machine path in an output: {text[:300]!r}"
        assert not (kind == "execute_result" and re.fullmatch(r"'[^']*'", text.strip())), (
            f"a stray value: {text!r}")
    assert any(text.startswith("mode: full") for _, text in found), "say the mode it ran in"
