"""Write-ahead logs: where a record becomes durable before it is acknowledged."""

from broker_service.stream.wal.base import (
    Wal,
    WalEntry,
    WalError,
    WalFatal,
    WalRecord,
    WalStreamFailed,
    WalTimeout,
)
from broker_service.stream.wal.file import FileWal, read_wal_dir
from broker_service.stream.wal.object import ObjectWal

__all__ = [
    "FileWal",
    "ObjectWal",
    "Wal",
    "WalEntry",
    "WalError",
    "WalFatal",
    "WalRecord",
    "WalStreamFailed",
    "WalTimeout",
    "read_wal_dir",
]
