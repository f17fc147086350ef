"""Package data: label files (see SOURCES.md / SOURCES.txt for provenance and licence)."""
