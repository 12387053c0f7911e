"""Kafka's exactly-once consume-transform-produce loop (confluent-kafka), run as a child process
so that a test can treat a hung client like a crashed application.

Why a child process: librdkafka 2.16 can block ``send_offsets_to_transaction`` past its timeout,
for ever, when the cached group coordinator was a broker that has since left the cluster's
metadata (confluentinc/librdkafka#5511, with #5456: the coordinator request's timeout is never
checked). Apache Kafka drops a dead broker from Metadata just as we do, so a real cluster hits
it too. A C call cannot be interrupted from Python; a process can be killed. Exactly-once must
hold through an application crash as much as through a broker crash: the next incarnation's
InitProducerId fences the old one and aborts its open transaction.

The child talks to its parent in lines: it prints ``done N`` after each committed transaction
and ``kill`` when it wants the parent to kill a broker mid-transaction, then waits for a line
on stdin before it commits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def committed_count(bootstrap: str, source: str, group: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = c.committed([TopicPartition(source, p) for p in range(partitions)], timeout=30)
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in committed)


def _commit(producer: Producer) -> None:
    for _ in range(20):
        try:
            producer.commit_transaction(60)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            time.sleep(0.5)  # the application's retry back-off (retriable error), not a wait
    raise AssertionError("commit never succeeded")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def process(
    bootstrap: str, source: str, sink: str, group: str, partitions: int, total: int, kill_after: int
) -> None:
    """On an abortable error abort and restart from the committed offsets (a new consumer);
    retriable commit errors are retried. ``kill_after`` < 0: never ask for a kill."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{group}-p",
            "transaction.timeout.ms": 20000,
        }
    )
    producer.init_transactions(30)
    done = committed_count(bootstrap, source, group, partitions)
    asked = kill_after < 0
    while done < total:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([source])
        try:
            while done < total:
                msgs = [m for m in consumer.consume(50, 1.0) if m.error() is None]
                if not msgs:
                    continue
                producer.begin_transaction()
                for m in msgs:
                    producer.produce(
                        sink, value=str(int(m.value()) * 10).encode(), partition=m.partition()
                    )
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()),
                    consumer.consumer_group_metadata(),
                    30,
                )
                if not asked and done >= kill_after:
                    _say("kill")  # mid-transaction: its records are written, not committed
                    sys.stdin.readline()
                    asked = True
                _commit(producer)
                done += len(msgs)
                _say(f"done {done}")
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            producer.abort_transaction(60)
            done = committed_count(bootstrap, source, group, partitions)
        finally:
            consumer.close()


@dataclass
class EosRun:
    """What the parent saw: whether the broker was killed, and how many hung children
    (librdkafka#5511) it had to kill and replace."""

    killed: bool = False
    hung_restarts: int = 0
    lines: list[str] = field(default_factory=list)


def run(
    bootstrap: str,
    source: str,
    sink: str,
    group: str,
    partitions: int,
    total: int,
    kill: Callable[[], None],
    kill_after: int,
    deadline_s: float = 200.0,
    stall_s: float = 45.0,
) -> EosRun:
    """Run children until the group has committed ``total`` inputs. A child silent for
    ``stall_s`` (half as long again as its own 30 s call timeout) is killed and replaced, as
    an orchestrator replaces a hung application; the broker is killed once, at the first
    child's request."""
    out = EosRun()
    deadline = time.monotonic() + deadline_s
    done = 0
    while done < total:
        assert time.monotonic() < deadline, f"stuck at {done}; {out.lines[-5:]}"
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.eos_processor",
                bootstrap,
                source,
                sink,
                group,
                str(partitions),
                str(total),
                str(-1 if out.killed else kill_after),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            text=True,
            env={**os.environ, "PYTHONPATH": REPO},
        )
        assert child.stdin is not None and child.stdout is not None
        heard = [time.monotonic()]

        def read(c: subprocess.Popen[str] = child, heard: list[float] = heard) -> None:
            assert c.stdout is not None and c.stdin is not None
            for line in c.stdout:
                heard[0] = time.monotonic()
                out.lines.append(line.rstrip())
                if line.strip() == "kill" and not out.killed:
                    kill()
                    out.killed = True
                    c.stdin.write("ok\n")
                    c.stdin.flush()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while child.poll() is None:
            if time.monotonic() - heard[0] > stall_s or time.monotonic() > deadline:
                child.kill()
                out.hung_restarts += 1
                out.lines.append(f"child {child.pid} silent for {stall_s:.0f} s: killed")
                break
            reader.join(0.2)
        child.wait()
        reader.join(10)
        if child.returncode not in (0, -9):
            raise AssertionError(f"processor failed ({child.returncode}): {out.lines[-20:]}")
        done = committed_count(bootstrap, source, group, partitions)
    return out


if __name__ == "__main__":
    b, src, dst, grp, parts, tot, after = sys.argv[1:8]
    process(b, src, dst, grp, int(parts), int(tot), int(after))
