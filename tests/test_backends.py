"""The per-backend suite (tests/backend/), once per backend, each in a fresh process."""

import sys

import pytest

from backends import BACKENDS, run


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_suite(backend, capsys):
    """Minutes per backend on 2 CPU cores: the child's progress dots go straight to the
    terminal, so a long suite is never silent."""
    with capsys.disabled():
        sys.stdout.write(f"\n[{backend} suite] ")
        run(backend, ["-m", "pytest", "tests/backend", "-q", "-p", "no:cacheprovider",
                      "-o", "addopts="], echo=sys.stdout, ALLLIB_BACKEND_SUITE="1")


def test_run_retries_a_hung_child_but_not_a_failed_one(tmp_path):
    """`run` kills a child at its timeout and, with hang_retries, starts it again; a child that
    exits with an error is reported at once."""
    marker = tmp_path / "hung-once"
    hang_once = (f"import os, time\nif not os.path.exists({str(marker)!r}):\n"
                 f"    open({str(marker)!r}, 'w').close(); time.sleep(60)\nprint('done')")
    output = run("torch", ["-c", hang_once], timeout=3, hang_retries=1)
    assert "attempt 1 hung" in output and output.rstrip().endswith("done")
    marker.unlink()
    with pytest.raises(AssertionError, match="killed after 3 s"):
        run("torch", ["-c", hang_once], timeout=3)
    with pytest.raises(AssertionError, match="exit 3"):
        run("torch", ["-c", "import sys; print('tried'); sys.exit(3)"], timeout=30, hang_retries=1)
