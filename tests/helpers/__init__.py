"""What several test modules share: subprocess and in-process CLI calls (cli), runs held until
the test releases them (gates), files in the real dataset formats (dataset_files), records
compared without their timings (records), the meter's oracles (oracles) and third-party
models (zoo_cases), a stored race (races), the app through AppTest (apptest), and the
dashboard served in a subprocess and driven in chromium (serve; the dashboard benchmarks use
it too). Imported as `tests.helpers.<module>` (pytest.ini puts the repository root on
sys.path)."""
