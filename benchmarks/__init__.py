"""Load benchmarks of the digit service against the obvious implementation and the HTTP floor."""
