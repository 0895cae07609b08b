#!/usr/bin/env python3
"""What the disk and the kernel charge for the log's write pattern, outside
evstore: the measurements behind how the writer prepares segments and hands
pages back (README, "On-disk format").

1. `prealloc`: a 64 MiB file prepared three ways, then written with `pwrite`
   of CHUNK bytes, each followed by `fdatasync` (the pattern of one group
   commit after another):
   - `fallocate`: blocks reserved only (extents marked unwritten);
   - `direct_zero`: reserved, then written with zeros through O_DIRECT;
   - `cached_zero`: written with zeros through the page cache.
   Prints syncs/s, MB/s and CPU per write.
2. `recycle`: 24 such files written one after another (1.5 GiB), once keeping
   every written page cached, once handing the pages more than WINDOW bytes
   behind the write back to the kernel (`posix_fadvise(DONTNEED)`) after each
   sync. Prints MB/s and CPU per write.

Usage: python3 benches/write_pattern.py [DIR] [CHUNK_BYTES] [WINDOW_BYTES]
(default target/bench-data, 524288, 8 MiB). DIR must be on the disk to
measure, not a tmpfs (O_DIRECT is refused there).
"""

import mmap
import os
import sys
import time

SEGMENT = 64 << 20
MIB = 1 << 20


def prepare(path, mode):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if mode != "cached_zero":
        os.posix_fallocate(fd, 0, SEGMENT)
    if mode == "direct_zero":
        direct = os.open(path, os.O_WRONLY | os.O_DIRECT)
        zeros = mmap.mmap(-1, MIB)  # page-aligned and zeroed, as O_DIRECT needs
        for i in range(SEGMENT // MIB):
            os.pwritev(direct, [zeros], i * MIB)
        os.close(direct)
    if mode == "cached_zero":
        zeros = bytes(MIB)
        for i in range(SEGMENT // MIB):
            os.pwrite(fd, zeros, i * MIB)
    os.fsync(fd)
    return fd


def write_synced(fd, chunk, window=None):
    """Writes the file chunk by chunk, each followed by fdatasync; returns
    (writes, bytes)."""
    data = os.urandom(chunk)
    writes = 0
    for offset in range(0, SEGMENT - chunk + 1, chunk):
        os.pwrite(fd, data, offset)
        os.fdatasync(fd)
        writes += 1
        if window is not None and offset >= window:
            os.posix_fadvise(fd, offset - window, chunk, os.POSIX_FADV_DONTNEED)
    return writes, writes * chunk


def prealloc(directory, chunk):
    print(f"## prealloc: {chunk}-byte writes, each followed by fdatasync")
    for mode in ("fallocate", "direct_zero", "cached_zero"):
        path = os.path.join(directory, "write_pattern.prealloc")
        fd = prepare(path, mode)
        cpu, wall = time.process_time(), time.time()
        writes, written = write_synced(fd, chunk)
        wall, cpu = time.time() - wall, time.process_time() - cpu
        os.close(fd)
        os.remove(path)
        print(
            f"{mode:12s} {writes / wall:8.0f} syncs/s {written / wall / 1e6:7.0f} MB/s"
            f"  CPU per write {cpu / writes * 1e6:6.0f} us"
        )


def recycle(directory, chunk, window):
    print(f"## recycle: 24 x 64 MiB, {chunk}-byte writes, window {window} bytes")
    for keep_all in (True, False):
        paths = []
        writes = written = 0
        cpu, wall = time.process_time(), time.time()
        for n in range(24):
            path = os.path.join(directory, f"write_pattern.{n}")
            paths.append(path)
            fd = prepare(path, "direct_zero")
            w, b = write_synced(fd, chunk, None if keep_all else window)
            writes, written = writes + w, written + b
            os.close(fd)
        wall, cpu = time.time() - wall, time.process_time() - cpu
        for path in paths:
            os.remove(path)
        label = "keep all" if keep_all else "hand back"
        print(
            f"{label:12s} {written / wall / 1e6:7.0f} MB/s"
            f"  CPU per write {cpu / writes * 1e6:6.0f} us"
        )


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "bench-data")
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 512 * 1024
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 8 * MIB
    os.makedirs(directory, exist_ok=True)
    prealloc(directory, chunk)
    recycle(directory, chunk, window)


if __name__ == "__main__":
    main()
