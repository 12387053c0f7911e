"""Build a broker on the embedded default: local directory + SQLite + file WAL."""

from __future__ import annotations

from .broker import Broker
from .config import BrokerConfig
from .metadata.sqlite import SqliteMetadataStore
from .storage.objectstore.fs import FsObjectStore
from .storage.wal import FileWal


def embedded_broker(config: BrokerConfig) -> Broker:
    d = config.data_dir
    return Broker(
        config,
        SqliteMetadataStore(d / "metadata.sqlite"),
        FsObjectStore(d / "objects"),
        FileWal(
            d / "wal" / f"broker-{config.node_id}",
            flush_interval_ms=config.wal_flush_ms,
            flush_bytes=config.wal_flush_bytes,
            segment_bytes=config.wal_segment_bytes,
        ),
    )
