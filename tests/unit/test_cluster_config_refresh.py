"""A broker's view of the cluster-wide dynamic broker configs (``kafka-configs --entity-type
brokers --entity-default``) follows the metadata store on every sync, and its own
AlterConfigs at once. A sync whose read of the store began before an alter here and ended
after it must not put the old values back: DescribeConfigs showed a deleted default as still
set until the next sync (tests/integration/test_topic_configs.py::test_cluster_wide_broker_
defaults failed so once in a full-suite run). Real SQLite store and ports; the sync's read
is held between reading and returning."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from broker_service.kafka.configs import ConfigView, alter_broker_configs, refresh_cluster_configs
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.sqlite import SqliteMetadataStore


class HeldRead(SqliteMetadataStore):
    """SQLite whose first ``cluster_configs`` read, once armed, returns only when released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.reading = threading.Event()
        self.release = threading.Event()

    def cluster_configs(self) -> dict[str, str]:
        values = super().cluster_configs()
        if self.armed:
            self.armed = False
            self.reading.set()
            self.release.wait(10)
        return values


def test_a_sync_read_from_before_an_alter_does_not_undo_it(tmp_path: Path) -> None:
    async def run() -> None:
        md = HeldRead(tmp_path / "m.sqlite")
        md.set_cluster_configs({}, {"log.retention.ms": "7200000"})
        ports = MetadataPorts(md)
        view = ConfigView(static={})
        await refresh_cluster_configs(ports, view)
        assert view.dynamic == {"log.retention.ms": "7200000"}
        md.armed = True
        sync = asyncio.ensure_future(refresh_cluster_configs(ports, view))
        while not md.reading.is_set():
            await asyncio.sleep(0.01)
        # the default deleted through this broker while the sync's read is on its way
        await alter_broker_configs(ports, view, None, lambda c: {**c, "log.retention.ms": None},
                                   ["log.retention.ms"], False)  # fmt: skip
        assert view.dynamic == {}
        md.release.set()
        await sync
        assert view.dynamic == {}, f"the sync put back {view.dynamic}"
        await refresh_cluster_configs(ports, view)  # the next sync reads the store as it is
        assert view.dynamic == {}
        ports.close()
        md.close()

    asyncio.run(run())
