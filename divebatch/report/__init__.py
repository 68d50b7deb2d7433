"""report: what is shown of stored runs: figures, tables, exports, the reproduction's report,
Learn-page numbers."""
