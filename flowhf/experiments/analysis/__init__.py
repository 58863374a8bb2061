"""The report's analyses over finished runs: the frontier across a sweep, reach (time to a
reference reward), gold vs proxy (its tables)."""
