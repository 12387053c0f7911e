"""Kafka framing, sans-I/O: a byte stream in, whole request frames out.

A frame is a 4-byte big-endian size followed by that many bytes. The caller feeds bytes with
``get_buffer`` / ``buffer_updated`` (the shape of ``asyncio.BufferedProtocol``, so the kernel
writes straight into our buffers) or ``receive_data``, and takes frames with ``next_frame``.
No sockets here: the tests drive it with bytes.

Memory follows the bytes that arrived, never what a size prefix claims:
- small frames are gathered in a staging buffer that exists only while bytes are pending, so an
  idle connection holds no buffer at all;
- a large frame is received into chunks allocated one at a time as its bytes arrive (one chunk,
  zero copies, for frames up to 1 MiB, the usual produce request; beyond, chunks of 64 KiB
  doubling up to 1 MiB), so a 4-byte prefix claiming 100 MiB costs 64 KiB until the bytes
  really come;
- ``max_frame`` is a setting of the caller: Kafka caps frames at 512 KB while SASL
  authentication is pending, at ``socket.request.max.bytes`` after.
"""

from __future__ import annotations

from collections import deque

STAGING_BYTES = 16 * 1024  # a staging buffer's first size; it grows for bulk traffic
STAGING_MAX = 256 * 1024  # staging never grows beyond this: larger frames get chunks
LARGE_FRAME = 64 * 1024  # frames above this are received into buffers of their own
CHUNK_BYTES = 1 << 20  # a large frame's buffers are allocated this much at a time


class FrameError(Exception):
    """The stream is not Kafka framing (or breaks a limit): the connection must close."""


class Framer:
    def __init__(self, max_frame: int, min_frame: int = 8) -> None:
        self.max_frame = max_frame
        self.min_frame = min_frame
        self._staging: bytearray | None = None
        self._start = 0  # unparsed bytes are _staging[_start:_end]
        self._end = 0
        self._frames: deque[memoryview] = deque()
        # a large frame in progress: its size, the chunks received so far, bytes in them
        self._large_size = 0
        self._chunks: list[bytearray] = []
        self._large_filled = 0
        self._chunk_filled = 0

    # -- bytes in ------------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes go (for ``asyncio.BufferedProtocol.get_buffer``)."""
        if self._large_size:
            chunk = self._chunks[-1] if self._chunks else None
            if chunk is None or self._chunk_filled == len(chunk):
                size = 2 * len(chunk) if chunk is not None else LARGE_FRAME
                chunk = bytearray(min(size, CHUNK_BYTES, self._large_size - self._large_filled))
                self._chunks.append(chunk)
                self._chunk_filled = 0
            return memoryview(chunk)[self._chunk_filled :]
        staging = self._staging
        if staging is None:
            staging = self._staging = bytearray(STAGING_BYTES)
        elif self._end == len(staging):
            pending = self._end - self._start
            if self._start > 0 and pending < len(staging) // 2:  # move the tail to the front
                staging[:pending] = staging[self._start : self._end]
            else:  # full of one unfinished frame header or bulk traffic: grow
                grown = bytearray(min(STAGING_MAX, 2 * len(staging)))
                grown[:pending] = staging[self._start : self._end]
                staging = self._staging = grown
            self._start, self._end = 0, pending
        return memoryview(staging)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the last buffer returned by ``get_buffer``."""
        if self._large_size:
            self._chunk_filled += nbytes
            self._large_filled += nbytes
            if self._large_filled == self._large_size:
                self._finish_large()
            return
        self._end += nbytes
        self._split()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes (copies them in: the convenience form of get_buffer/buffer_updated)."""
        view = memoryview(data)
        while view:
            buf = self.get_buffer()
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    # -- frames out ------------------------------------------------------------------------
    def next_frame(self) -> memoryview | None:
        """The next whole frame (its bytes are the caller's to keep and edit), or None."""
        return self._frames.popleft() if self._frames else None

    @property
    def partial(self) -> bool:
        """Whether part of a frame has arrived and the rest has not."""
        return bool(self._large_size) or self._end > self._start

    @property
    def buffered(self) -> int:
        """Bytes held: frames not taken yet, plus what has arrived of the next one."""
        held = sum(len(f) for f in self._frames) + self._large_filled
        return held + (self._end - self._start)

    def _split(self) -> None:
        staging = self._staging
        assert staging is not None
        while self._end - self._start >= 4:
            pos = self._start
            size = int.from_bytes(staging[pos : pos + 4], "big", signed=True)
            if size < self.min_frame or size > self.max_frame:
                raise FrameError(f"frame size {size} outside [{self.min_frame}, {self.max_frame}]")
            have = self._end - pos - 4
            if have >= size:
                # a copy of its own: handlers keep (and edit) frames after staging is reused
                self._frames.append(memoryview(staging[pos + 4 : pos + 4 + size]))
                self._start = pos + 4 + size
                continue
            if size > LARGE_FRAME:  # the rest arrives into buffers of its own
                # up to 1 MiB (the usual produce request) in one buffer: no copy; a larger
                # claim grows its buffers as its bytes come (64 KiB, then doubling)
                first = bytearray(size if size <= CHUNK_BYTES else max(LARGE_FRAME, have))
                first[:have] = staging[pos + 4 : self._end]
                self._large_size, self._large_filled = size, have
                self._chunks, self._chunk_filled = [first], have
                self._start = self._end
            break
        if self._start == self._end:  # nothing pending: an idle connection holds no buffer
            self._staging = None
            self._start = self._end = 0

    def _finish_large(self) -> None:
        chunks = self._chunks
        frame = chunks[0] if len(chunks) == 1 else bytearray().join(chunks)
        self._frames.append(memoryview(frame))
        self._large_size = self._large_filled = self._chunk_filled = 0
        self._chunks = []
