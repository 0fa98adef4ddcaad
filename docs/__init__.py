"""The project's documentation; blocks.py writes its generated parts (`make docs`)."""
