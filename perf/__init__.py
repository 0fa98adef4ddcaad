"""Load and performance harness: perf_analyzer and Locust against the real server, baselines in the same run.

See perf/README.md for what each module does and how the data flows from a run to the report.
"""
