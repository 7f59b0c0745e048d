"""Reports on run results: tables (rich and CSV), plots (PNG) and access heatmaps.

- ``report.tables``: ``summary_table``, ``vmstat_table``, ``numastat_table``, ``compare_table``
  build ``Table`` objects (raw values + a unit per cell) that render to the terminal in human
  units or raw (``Table.to_rich(raw=...)``), to CSV (``Table.write_csv``) and to JSON-ready
  records (``Table.records()``).
- ``report.plots``: one function per chart, each writing a PNG and returning its path.
- ``report.heatmap``: an access heatmap (time x address) as PNG or as shaded terminal text.

Every file is written atomically (a temporary file in the same directory, then a rename), so a
report file is either the previous one or the complete new one; output paths are checked and
written by ``tierscan.outpath`` (re-exported here).

matplotlib is imported only by ``plots`` and ``heatmap``'s PNG writer, so importing
``report.tables`` stays cheap.
"""

from __future__ import annotations

from tierscan.outpath import (atomic_batch, atomic_write, check_output_dir, check_output_file,
                              check_output_files, ensure_dir)

__all__ = ["atomic_batch", "atomic_write", "check_output_dir", "check_output_file",
           "check_output_files", "ensure_dir"]
