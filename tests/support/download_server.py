"""A local stand-in for PaddleClas's download host: http.server on 127.0.0.1 serving bytes the test made.

It speaks the HTTP the downloader relies on (Content-Length, Range requests answered with 206 and
Content-Range) and can misbehave on purpose: cut a response short once, or ignore Range headers.
Every request is logged with its Range header so tests can see a resume really happened.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from catalog import ModelEntry
from catalog.models import OFFICIAL_HOST


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> content
    cut_once: dict[str, int] = field(default_factory=dict)  # URL path -> bytes to send before hanging up
    ignore_range: bool = False
    log: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        requested = self.headers.get("Range")
        behaviour.log.append((self.path, requested))
        content = behaviour.files.get(self.path)
        if content is None:
            self.send_error(404, "Not Found")
            return
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        start = int(match.group(1)) if match and not behaviour.ignore_range else 0
        if start >= len(content) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(content)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.send_header("Content-Length", str(len(content) - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        body = content[start:]
        cut = behaviour.cut_once.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour


class DownloadHost:
    """Context manager: `with DownloadHost() as host: host.serve(url_path, data)`, then use host.mirror."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self._server = _Server(self.behaviour)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def mirror(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, official_url: str, content: bytes) -> str:
        """Serve `content` at the path of an official URL; returns the local URL."""
        path = official_url.removeprefix(OFFICIAL_HOST)
        self.behaviour.files[path] = content
        return self.mirror + path

    def serve_for(self, entry: ModelEntry, kind: str, content: bytes) -> str:
        return self.serve(entry.inference_url if kind == "inference" else entry.weights_url, content)

    def ranges(self, url: str) -> list[str | None]:
        path = url.removeprefix(self.mirror)
        return [requested for logged, requested in self.behaviour.log if logged == path]

    def __enter__(self) -> DownloadHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
