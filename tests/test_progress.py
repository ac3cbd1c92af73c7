"""Progress bars: shown on a terminal, silent in logs (one line per update would flood them)."""
import io
import sys

from lirpa_lid.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.delenv("LIRPA_LID_PROGRESS", raising=False)
    for _ in progress_bar(range(50), desc="work"):
        pass
    assert log.getvalue() == ""


def test_bar_on_a_terminal_unless_disabled(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    for _ in progress_bar(range(5), desc="work", file=term):
        pass
    assert "work" in term.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    for _ in progress_bar(range(5), desc="work", enabled=False, file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_forced_bar_in_a_log_is_throttled(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setenv("LIRPA_LID_PROGRESS", "1")
    bar = progress_bar(total=1000, desc="work", file=log)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert 0 < log.getvalue().count("work") <= 3
