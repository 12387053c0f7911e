"""S3 ObjectStore: boto3 in a bounded pool of worker threads; the event loop never blocks.

Semantics are the local store's (see base.ObjectStore and fs.py), except that ``put`` is a
conditional create (``If-None-Match: *``): a key that already exists is never overwritten and
the put raises ObjectExists. Keys are ``prefix + key`` in ``bucket``.

- Endpoint and region: botocore's own resolution, so ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL`` (LocalStack, moto server) and ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
  work unchanged; ``endpoint_url`` / ``region`` override them.
- Retries: botocore's "standard" mode (jittered exponential backoff on 500/502/503/504,
  SlowDown and other throttling codes, timeouts and connection errors, behind a client-wide
  retry quota), with explicit connect/read timeouts. Botocore stops at the response headers,
  so errors while a GET's body streams in are retried here, with the same backoff shape.
- Concurrency: at most ``max_concurrency`` requests in flight per store (an asyncio.Semaphore in
  front of a dedicated thread pool of that size, which also keeps S3 calls from crowding the
  default executor used for WAL fsyncs).
- ``put`` streams the body from the caller's list of buffers through a seekable reader (botocore
  rewinds it to retry), never joining them. Objects above ``multipart_threshold`` go up as a
  multipart upload of ``part_size`` parts, uploaded in parallel and aborted on any failure.
- A put whose first attempt landed but whose response was lost is retried by botocore and then
  meets its own object (412): every put carries a random token in its metadata, so that case is
  told apart from a real conflict and succeeds.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import functools
import io
import itertools
import logging
import random
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from broker_service.stream.objectstore.base import (
    SINGLE_PUT_MAX_BYTES,
    Buffer,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000  # S3's ceiling on parts per upload
TOKEN_METADATA = "put-token"  # x-amz-meta-put-token: which put wrote the object

_NOT_FOUND = ("NoSuchKey", "404", "NotFound")
_BODY_ERRORS = (HTTPClientError, IncompleteReadError, BotoConnectionError)

T = TypeVar("T")


class _BodyReadError(Exception):
    """The response headers arrived but the body did not (botocore does not retry this)."""


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_concurrency: int = 16,
        multipart_threshold: int = SINGLE_PUT_MAX_BYTES,
        part_size: int = 16 * MiB,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        list_page_size: int = 1000,
        addressing_style: str | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} (S3's minimum)")
        if not 1 <= list_page_size <= 1000:
            raise ValueError("list_page_size must be within 1..1000")
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be positive")
        self.bucket = bucket
        # "s3://bucket/cluster-1" means the folder cluster-1/, not a key prefix "cluster-1..."
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_attempts = max_attempts
        self.list_page_size = list_page_size
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # total_max_attempts counts the first try; client-config "max_attempts" would not
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max_concurrency,
            tcp_keepalive=True,
            s3={"addressing_style": addressing_style} if addressing_style else None,
        )
        # A session of our own: the default session is not safe to share across threads,
        # while a client is.
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=config
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="s3"
        )
        self.max_concurrency = max_concurrency
        self._sem = asyncio.Semaphore(max_concurrency)
        self._sem_loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[None]] = set()

    # -- plumbing ------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad object key {key!r}")
        return self.prefix + key

    def _limit(self) -> asyncio.Semaphore:
        """The in-flight bound; one per event loop, so a store outlives an ``asyncio.run``
        (a warm Lambda's next invocation). The thread pool bounds all loops together."""
        loop = asyncio.get_running_loop()
        if self._sem_loop is not loop:
            self._sem, self._sem_loop = asyncio.Semaphore(self.max_concurrency), loop
        return self._sem

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async with self._limit():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )

    @staticmethod
    def _backoff(attempt: int) -> float:
        """Full jitter: uniform in [0, min(5 s, 50 ms * 2**attempt)) (botocore's shape)."""
        return random.random() * min(5.0, 0.05 * 2**attempt)

    def close(self) -> None:
        """Release the threads and connections: calls not started are cancelled, a call
        still running (a stalled S3) is not waited for; it fails or ends on its own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # -- get -----------------------------------------------------------------------------
    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        k = self._key(key)
        rng: str | None
        if start < 0:
            if end is not None:
                raise ValueError("a suffix read (negative start) takes no end")
            rng = f"bytes={start}"  # bytes=-N: the last N bytes
        elif end is None:
            rng = f"bytes={start}-" if start else None
        elif end < start:
            raise ValueError(f"end {end} before start {start}")
        elif end == start:
            await self._head(key, k)  # nothing to read, but a missing key is still an error
            return b""
        else:
            rng = f"bytes={start}-{end - 1}"
        for attempt in range(self.max_attempts):
            try:
                return await self._call(self._get_sync, key, k, rng, start, end)
            except _BodyReadError as exc:
                if attempt + 1 >= self.max_attempts:
                    raise exc.__cause__ or exc from None
                log.info("s3 GET %s: body read failed (%s), retrying", k, exc.__cause__)
                await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    def _get_sync(self, key: str, k: str, rng: str | None, start: int, end: int | None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": k}
        if rng:
            kwargs["Range"] = rng
        try:
            resp = self.client.get_object(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            if code == "InvalidRange":  # 416: start at or past the end, or an empty object
                return b""
            raise
        body = resp["Body"]
        try:
            data: bytes = body.read()
        except _BODY_ERRORS as exc:
            raise _BodyReadError(str(exc)) from exc
        finally:
            body.close()
        if rng and not resp.get("ContentRange"):  # a server that ignored Range: whole object
            data = data[start:end]
        return data

    async def _head(self, key: str, k: str) -> dict[str, Any]:
        try:
            resp: dict[str, Any] = await self._call(
                self.client.head_object, Bucket=self.bucket, Key=k
            )
            return resp
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise

    # -- put -----------------------------------------------------------------------------
    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        k = self._key(key)
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        size = sum(len(v) for v in views)
        token = uuid.uuid4().hex
        for attempt in range(self.max_attempts):
            try:
                if size > self.multipart_threshold:
                    await self._put_multipart(k, views, size, token)
                else:
                    await self._call(self._put_single, k, views, size, token)
                return
            except ClientError as exc:
                code = _code(exc)
                if code == "PreconditionFailed":
                    if await self._written_by(key, k, token):
                        return  # our own earlier attempt landed; its response was lost
                    raise ObjectExists(key) from exc
                # 409: another conditional write to the key is in flight; S3 says retry
                if code == "ConditionalRequestConflict" and attempt + 1 < self.max_attempts:
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                raise

    async def _written_by(self, key: str, k: str, token: str) -> bool:
        try:
            head = await self._head(key, k)
        except ObjectNotFound:
            return False
        return bool(head.get("Metadata", {}).get(TOKEN_METADATA) == token)

    def _put_single(self, k: str, views: list[memoryview], size: int, token: str) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=k,
            Body=BufferListReader(views) if size else b"",
            ContentLength=size,
            IfNoneMatch="*",
            Metadata={TOKEN_METADATA: token},
        )

    async def _put_multipart(self, k: str, views: list[memoryview], size: int, token: str) -> None:
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        submitted: list[concurrent.futures.Future[Any]] = []  # every request sent, in order

        async def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            async with self._limit():
                cf = self._executor.submit(functools.partial(fn, *args, **kwargs))
                submitted.append(cf)
                return await asyncio.wrap_future(cf)

        tasks: list[asyncio.Future[dict[str, Any]]] = []
        try:
            created = await call(
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=k,
                Metadata={TOKEN_METADATA: token},
                ChecksumAlgorithm="CRC32",
            )
            upload_id: str = created["UploadId"]
            for n, lo in enumerate(range(0, size, part_size)):
                part = slice_buffers(views, lo, min(lo + part_size, size))
                tasks.append(
                    asyncio.ensure_future(call(self._upload_part, k, upload_id, n + 1, part))
                )
            done = await asyncio.gather(*tasks)
            await call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=k,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                IfNoneMatch="*",
            )
        except BaseException:
            for t in tasks:
                t.cancel()  # parts not yet sent are never sent
            # shielded: the upload is aborted even when the put itself was cancelled
            cleanup = asyncio.ensure_future(self._abandon(k, submitted))
            self._background.add(cleanup)
            cleanup.add_done_callback(self._background.discard)
            await asyncio.shield(cleanup)
            raise

    def _upload_part(
        self, k: str, upload_id: str, number: int, views: list[memoryview]
    ) -> dict[str, Any]:
        resp = self.client.upload_part(
            Bucket=self.bucket,
            Key=k,
            UploadId=upload_id,
            PartNumber=number,
            Body=BufferListReader(views),
            ContentLength=sum(len(v) for v in views),
            ChecksumAlgorithm="CRC32",
        )
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if resp.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    async def _abandon(self, k: str, submitted: list[concurrent.futures.Future[Any]]) -> None:
        """Abort a failed multipart upload once every request already sent for it has ended
        (a part landing after the abort would be kept, and billed, until aborted again)."""
        if not submitted:
            return  # cancelled before CreateMultipartUpload was sent
        await asyncio.wait([asyncio.wrap_future(cf) for cf in submitted])
        create = submitted[0]
        if create.cancelled() or create.exception() is not None:
            return  # no upload was created
        upload_id = create.result()["UploadId"]
        try:
            await self._call(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=k, UploadId=upload_id
            )
        except Exception as exc:  # NoSuchUpload: it completed after all
            log.warning("s3: abort of multipart upload %s of %s failed: %s", upload_id, k, exc)

    # -- delete, list --------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        try:
            await self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND:
                raise

    async def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + prefix,
            "MaxKeys": self.list_page_size,
        }
        while True:
            page = await self._call(self.client.list_objects_v2, **kwargs)
            keys.extend(o["Key"][len(self.prefix) :] for o in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return sorted(keys)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def list_tops(self) -> builtins.list[str]:
        tops: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/"}
        while True:
            page = await self._call(self.client.list_objects_v2, **kwargs)
            tops += [c["Prefix"][len(self.prefix) :] for c in page.get("CommonPrefixes", ())]
            tops += [o["Key"][len(self.prefix) :] for o in page.get("Contents", ())]
            if not page.get("IsTruncated"):
                return sorted(tops)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def slice_buffers(views: Sequence[memoryview], lo: int, hi: int) -> list[memoryview]:
    """Bytes [lo, hi) of the concatenation of ``views``, as views (no copy)."""
    out: list[memoryview] = []
    pos = 0
    for v in views:
        n = len(v)
        if pos + n > lo and pos < hi:
            out.append(v[max(lo - pos, 0) : min(hi - pos, n)])
        pos += n
        if pos >= hi:
            break
    return out


class BufferListReader(io.RawIOBase):
    """A seekable, read-only file over a list of byte views: botocore streams a body from it
    (and rewinds it to retry) without the buffers ever being joined."""

    def __init__(self, views: Sequence[memoryview]) -> None:
        super().__init__()
        self._views = [v for v in views if len(v)]
        self._starts = list(itertools.accumulate((len(v) for v in self._views), initial=0))
        self._size = self._starts[-1]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _chunk(self, limit: int) -> memoryview:
        i = bisect_right(self._starts, self._pos) - 1
        off = self._pos - self._starts[i]
        chunk = self._views[i][off : off + limit]
        self._pos += len(chunk)
        return chunk

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        chunks = []
        while size > 0 and self._pos < self._size:
            chunk = self._chunk(size)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        n = 0
        while n < len(out) and self._pos < self._size:
            chunk = self._chunk(len(out) - n)
            out[n : n + len(chunk)] = chunk
            n += len(chunk)
        return n

    def readall(self) -> bytes:
        return self.read()
