"""The state under state/: tinydb files of typed records, the outcome journal, atomic writes, the run lock."""
