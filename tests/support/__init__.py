"""What tests share, imported as `tests.support.<module>` (never from conftest.py, never from another test file).

- deployment.py: "export these models, serve them": the one factory behind every repository and
  server the tests use (the session fixtures in tests/conftest.py and the module fixtures of the
  tests that need other models or flags);
- images.py: test images made from real photographs, and hostile files;
- ensembles.py: the ensemble wiring check;
- download_server.py: a local stand-in for PaddleClas's download host;
- snapshots.py: a repository's files and digests, to prove a failure changed nothing;
- processes.py: the processes below a pid (launcher and Python backend stubs);
- paddleclas.py: PaddleClas's own preprocessing configs, transcribed (an independent oracle).
"""
