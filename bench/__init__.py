"""wbsync benchmarks (issue 6); run `python -m bench --help`. Not tests: nothing here runs under pytest."""
