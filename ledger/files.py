"""Reading a whole file of bounded size: key files, configuration, credentials, roots, documents.

One function, so that every reader refuses an oversized file the same way: by reading at most one byte
past the limit, never the whole of a file that an attacker or a mistake made huge.
"""

from __future__ import annotations

from pathlib import Path

from ledger.errors import DecodeError

__all__ = ["FileTooLargeError", "read_bounded"]


class FileTooLargeError(DecodeError):
    """A file holds more bytes than its reader accepts.

    Attributes:
        path: the file.
        limit: the most bytes accepted.
    """

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(f"{path} is larger than {limit} bytes")
        self.path = path
        self.limit = limit


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The whole file at ``path``, if it holds at most ``max_bytes`` bytes.

    Raises:
        OSError: the file cannot be opened or read.
        FileTooLargeError: it holds more than ``max_bytes`` bytes (only ``max_bytes + 1`` are read).
    """
    p = Path(path)
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(p, max_bytes)
    return data
