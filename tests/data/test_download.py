"""``formers data multi30k`` against a local HTTP server laid out like the data set's repository.

The server (127.0.0.1, a free port, a thread of the test) serves ``data/task1/raw/*.gz`` and the
uncompressed ``data/task1/tok/*`` files, as GitHub does: 50-line subsets of the offline copy in
``../shared/data/multi30k`` when it is there, generated lines otherwise.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from functools import partial

import pytest

from formers.cli.main import main
from formers.data.corpus import read_parallel
from formers.data.download import LANGUAGES, SPLITS, DownloadError, download_multi30k

from .helpers import MULTI30K

LINES = 50


def source_lines(name: str, lang: str) -> list[str]:
    """The first lines of an offline Multi30k file, or made-up ones when it is absent."""
    path = MULTI30K / name
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [line.rstrip("\n") for _, line in zip(range(LINES), f, strict=False)]
    return [f"{lang} sentence {i} of {name}" for i in range(LINES)]


@pytest.fixture
def repo(tmp_path):
    """A directory laid out like github.com/multi30k/dataset; returns its ``data/task1``."""
    task1 = tmp_path / "repo" / "data" / "task1"
    (task1 / "raw").mkdir(parents=True)
    (task1 / "tok").mkdir()
    for split in SPLITS:
        for lang in LANGUAGES:
            raw = "\n".join(source_lines(f"{split}.{lang}.gz", lang)) + "\n"
            (task1 / "raw" / f"{split}.{lang}.gz").write_bytes(gzip.compress(raw.encode()))
            tok = "\n".join(source_lines(f"tok/{split}.lc.norm.tok.{lang}.gz", lang)) + "\n"
            (task1 / "tok" / f"{split}.lc.norm.tok.{lang}").write_text(tok, encoding="utf-8")
    return task1


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        QuietHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def server(repo):
    """The base URL of ``data/task1/`` on a threaded server bound to 127.0.0.1."""
    QuietHandler.requests = []
    handler = partial(QuietHandler, directory=str(repo.parents[1]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data/task1/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "dest"


def run(dest, url, *extra):
    return main(["data", "multi30k", "--dest", str(dest), "--base-url", url, "--quiet", *extra])


def test_files_land_in_dest_in_the_offline_layout(server, repo, dest, capsys):
    assert run(dest, server) == 0
    assert "downloaded 24 files, 0 already present" in capsys.readouterr().out
    assert len(list(dest.glob("*.gz"))) == 12 and len(list((dest / "tok").glob("*.gz"))) == 12
    raw = dest / "train.en.gz"
    assert raw.read_bytes() == (repo / "raw" / "train.en.gz").read_bytes()  # as served
    tok = dest / "tok" / "val.lc.norm.tok.de.gz"  # gzipped on the way in
    assert gzip.decompress(tok.read_bytes()) == (repo / "tok" / "val.lc.norm.tok.de").read_bytes()
    pairs = read_parallel(
        dest / "tok/train.lc.norm.tok.en.gz", dest / "tok/train.lc.norm.tok.de.gz"
    )
    assert len(pairs) == LINES
    assert not [p for p in dest.rglob(".*")], "no temporary files left"


def test_rerunning_skips_files_already_present(server, dest, capsys):
    assert run(dest, server) == 0
    QuietHandler.requests.clear()
    assert run(dest, server) == 0
    assert QuietHandler.requests == []
    assert "downloaded 0 files, 24 already present" in capsys.readouterr().out


def test_a_subset_of_languages_with_progress_bars(server, dest, capsys):
    fetched, present = download_multi30k(dest, base_url=server, languages=["en", "de"])
    assert len(fetched) == 12 and present == []
    assert {p.name.split(".")[-2] for p in dest.rglob("*.gz")} == {"en", "de"}
    assert "train.en.gz" in capsys.readouterr().err  # the bar names the file


def test_a_missing_file_gives_one_clear_line_and_keeps_the_others(server, repo, dest, capsys):
    (repo / "tok" / "val.lc.norm.tok.de").unlink()
    assert run(dest, server, "--languages", "en", "de") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("formers data: error: could not download ")
    assert err.endswith("data/task1/tok/val.lc.norm.tok.de: HTTP 404 File not found")
    assert (dest / "train.en.gz").is_file()
    assert not (dest / "tok" / "val.lc.norm.tok.de.gz").exists()
    assert not [p for p in dest.rglob(".*")], "no partial file left"


def test_a_corrupt_gzip_file_is_refused(server, repo, dest):
    (repo / "raw" / "train.de.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DownloadError, match=r"train\.de\.gz is not a valid gzip file"):
        download_multi30k(dest, base_url=server, languages=["de"], progress=False)
    assert not (dest / "train.de.gz").exists()


def test_an_unreachable_server_gives_one_clear_line(dest, capsys):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(dest, f"http://127.0.0.1:{port}/data/task1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "check the connection or pass --base-url" in err


def test_an_unknown_language_is_refused(dest):
    with pytest.raises(ValueError, match="unknown Multi30k language"):
        download_multi30k(dest, languages=["xx"])
