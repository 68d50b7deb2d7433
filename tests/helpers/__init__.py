"""What several test modules share: subprocess and in-process CLI calls (cli), runs held until
the test releases them (gates), files in the real dataset formats (dataset_files) and records
compared without their timings (records). Imported as `tests.helpers.<module>` (pytest.ini
puts the repository root on sys.path)."""
