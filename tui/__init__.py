"""hpod's live terminal UI (installed as hpod.tui): `run_tui(db_path)` in hpod.tui.entry.

Layering: it reads the database through hpod.store only (one feed thread, read-only), writes
only command rows, and never imports the daemon's modules; hpod itself never imports Textual.
"""
