"""docs/results/music_table.py: a run's protocol cell says which protocol ran and what was cut."""

from __future__ import annotations

from pathlib import Path

from pyro_betalstm.testing.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "music_table.py"


def record(protocol: str, **settings) -> dict:
    return {"protocol": protocol, "settings": settings}


def test_the_protocol_cell_names_the_protocol_and_its_cut_epochs():
    table = load_script(SCRIPT, "music_table")
    assert table.protocol(record("paper", num_epochs=100, hidden=200)) == "paper"
    # fast and authors runs are labelled as such (they were labelled "short" before), with
    # their epochs only where a run cut them below the protocol's own 60 or 100
    assert table.protocol(record("fast", num_epochs=60)) == "fast"
    assert table.protocol(record("fast", num_epochs=20)) == "fast, 20 ep"
    assert table.protocol(record("authors", num_epochs=100)) == "authors"
    short = record("default", hidden=64, num_epochs=5, batch_size=32, train_chunk=100)
    assert table.protocol(short) == "short: h64, 5 ep, batch 32, windows 100"
