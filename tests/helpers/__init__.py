"""What several test modules share: subprocess and in-process CLI calls, gated runs, the
per-sample gradient oracles and files in the real dataset formats. Imported as
`tests.helpers.<module>` (pytest.ini puts the repository root on sys.path)."""
