"""Download Multi30k (Elliott et al. 2016, arXiv:1605.00459), task 1, from its public repository.

The files land in the layout of the project's offline copy (``../shared/data/multi30k``), so that a
recipe reads either: raw text as ``DEST/{split}.{lang}.gz`` and the data set's own lowercased,
normalized, Moses-tokenized text as ``DEST/tok/{split}.lc.norm.tok.{lang}.gz``. The repository
keeps the tokenized files uncompressed; they are gzipped on the way in.

Each file is written to a temporary name, checked, then renamed, so an interrupted download never
leaves a truncated file behind; files already present are skipped.
"""

from __future__ import annotations

import gzip
import os
import shutil
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/"
SPLITS = ("train", "val", "test_2016_flickr")
LANGUAGES = ("en", "de", "fr", "cs")
TIMEOUT_S = 60


class DownloadError(ValueError):
    """A file could not be fetched; the message names the URL and the reason."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: ``url_path`` below the base URL, ``dest_path`` below the destination."""

    url_path: str
    dest_path: str
    gzip_on_write: bool


def multi30k_files(
    languages: Sequence[str] = LANGUAGES, splits: Sequence[str] = SPLITS
) -> list[RemoteFile]:
    """The raw and tokenized files of task 1 for these languages and splits."""
    files = []
    for split in splits:
        for lang in languages:
            files.append(RemoteFile(f"raw/{split}.{lang}.gz", f"{split}.{lang}.gz", False))
            tok = f"{split}.lc.norm.tok.{lang}"
            files.append(RemoteFile(f"tok/{tok}", f"tok/{tok}.gz", True))
    return files


def download_multi30k(
    dest: str | Path,
    *,
    base_url: str = BASE_URL,
    languages: Sequence[str] = LANGUAGES,
    progress: bool = True,
) -> tuple[list[Path], list[Path]]:
    """Fetch Multi30k task 1 (train, val, test_2016_flickr; raw and tokenized) into ``dest``.

    Args:
        dest: destination directory (created if needed).
        base_url: the URL of the repository's ``data/task1/`` folder (a mirror, or a local server).
        languages: which of en, de, fr, cs to fetch.
        progress: show a progress bar per file.

    Returns:
        The files downloaded now and the files that were already present (and skipped).

    Raises:
        DownloadError: a file could not be fetched (HTTP error, no connection) or is not valid
            gzip; files fetched before it are kept.
        ValueError: an unknown language.
    """
    if unknown := sorted(set(languages) - set(LANGUAGES)):
        raise ValueError(f"unknown Multi30k language(s) {unknown}; choose from {list(LANGUAGES)}")
    dest = Path(dest)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    fetched, present = [], []
    for file in multi30k_files(languages):
        target = dest / file.dest_path
        if target.is_file():
            present.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fetch(base_url + file.url_path, target, gzip_on_write=file.gzip_on_write, progress=progress)
        fetched.append(target)
    return fetched, present


def fetch(url: str, target: Path, *, gzip_on_write: bool = False, progress: bool = True) -> None:
    """Download ``url`` to ``target`` atomically, optionally gzipping it; gzip output is checked.

    Raises:
        DownloadError: the server answered with an error, could not be reached, or sent a
            ``.gz`` file that does not decompress.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, tmp.open("wb") as raw:
            size = int(response.headers.get("Content-Length") or 0) or None
            bar = tqdm(
                total=size, desc=target.name, unit="B", unit_scale=True, disable=not progress
            )
            out = (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                if gzip_on_write
                else raw
            )
            with bar, out:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        _check_gzip(tmp, url)
        os.replace(tmp, target)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"could not download {url}: {reason}; check the connection or pass --base-url"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_gzip(path: Path, url: str) -> None:
    try:
        with gzip.open(path, "rb") as f:
            shutil.copyfileobj(f, _Null())
    except (OSError, EOFError, zlib.error) as error:
        raise DownloadError(f"{url} is not a valid gzip file ({error})") from None


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)
