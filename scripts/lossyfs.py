#!/usr/bin/env python3
"""lossyfs: a FUSE file system that forgets every write not flushed by fsync.

Mounts MOUNTPOINT as a pass-through view of BACKING, except that file data written
through it is held in this process's memory — like a page cache that is never written
back on its own — and reaches BACKING only when the file is fsync'ed (fsync or
fdatasync). Killing this process with SIGKILL is therefore a power cut for everything
on the mount: what an fsync had acknowledged is in BACKING, everything else is gone.

It stands in for dm-flakey / dm-log-writes on machines without device-mapper (the
kernel of the machine this was written on has no dm module and no way to load one),
and it is stricter than a real disk in one respect that matters here: a real page cache
writes dirty pages back within seconds, this one never does, so a commit that skipped
its fsync is always lost rather than sometimes.

Model, per file: the pages (4 KiB) written since the last fsync, and the file's size
as seen through the mount (truncation is held back like data). Reads combine BACKING
with those pages. fsync writes the pages, sets the size, and fsyncs BACKING's file.
Metadata — create, unlink, rename, mkdir, chmod — goes to BACKING at once (a stronger
guarantee than a real file system gives; SQLite fsyncs the directory where it needs
the entry anyway). Locks are left to the kernel (local POSIX locks), shared mmap
(SQLite's -shm) works through the kernel's page cache for the mount.

    python3 lossyfs.py BACKING MOUNTPOINT      # foreground; SIGKILL it to cut power

Needs root (or fusermount3), /dev/fuse, libfuse3 and the mfusepy package.
"""

import errno
import os
import sys
import threading

import mfusepy as fuse

PAGE = 4096


class Dirty:
    """Unflushed state of one file: written pages, size seen through the mount, and the
    smallest size it was truncated to since the last flush (bytes of BACKING past it
    are no longer part of the file)."""

    def __init__(self, size):
        self.pages = {}
        self.size = size
        self.cut = size


class LossyFS(fuse.Operations):
    use_ns = True

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.dirty = {}
        self.mutex = threading.RLock()

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _backing_size(self, path):
        return os.lstat(self._full(path)).st_size

    def _state(self, path):
        state = self.dirty.get(path)
        if state is None:
            state = Dirty(self._backing_size(path))
            self.dirty[path] = state
        return state

    def _read_backing(self, path, offset, size, limit):
        """Bytes of BACKING in [offset, offset+size), only below `limit`, zero-padded."""
        end = min(offset + size, limit)
        data = b""
        if end > offset:
            with open(self._full(path), "rb") as f:
                f.seek(offset)
                data = f.read(end - offset)
        return data + b"\0" * (size - len(data))

    def _page(self, path, state, n):
        page = state.pages.get(n)
        if page is None:
            page = bytearray(self._read_backing(path, n * PAGE, PAGE, state.cut))
            state.pages[n] = page
        return page

    # --- metadata: straight to BACKING ---------------------------------------------

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_ino",
            )
        }
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = attrs.pop(key + "_ns")
        with self.mutex:
            state = self.dirty.get(path)
            if state is not None:
                attrs["st_size"] = state.size
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._full(path))

    def unlink(self, path):
        with self.mutex:
            self.dirty.pop(path, None)
            return os.unlink(self._full(path))

    def rename(self, old, new):
        with self.mutex:
            os.rename(self._full(old), self._full(new))
            self.dirty.pop(new, None)
            if old in self.dirty:
                self.dirty[new] = self.dirty.pop(old)
        return 0

    def utimens(self, path, times=None):
        return os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))

    def statfs(self, path):
        sv = os.statvfs(self._full(path))
        return {
            key: getattr(sv, key)
            for key in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax",
            )
        }

    # --- data: held back until fsync ----------------------------------------------

    def create(self, path, mode, fi=None):
        fd = os.open(self._full(path), os.O_RDONLY | os.O_CREAT, mode)
        os.close(fd)
        return 0

    def open(self, path, flags):
        if flags & os.O_TRUNC:
            self.truncate(path, 0)
        return 0

    def read(self, path, size, offset, fh):
        with self.mutex:
            state = self.dirty.get(path)
            if state is None:
                with open(self._full(path), "rb") as f:
                    f.seek(offset)
                    return f.read(size)
            end = min(offset + size, state.size)
            out = bytearray()
            pos = offset
            while pos < end:
                n, within = divmod(pos, PAGE)
                take = min(PAGE - within, end - pos)
                page = state.pages.get(n)
                if page is not None:
                    out += page[within : within + take]
                else:
                    out += self._read_backing(path, pos, take, state.cut)
                pos += take
            return bytes(out)

    def write(self, path, data, offset, fh):
        with self.mutex:
            state = self._state(path)
            pos = offset
            view = memoryview(data)
            while view:
                n, within = divmod(pos, PAGE)
                take = min(PAGE - within, len(view))
                self._page(path, state, n)[within : within + take] = view[:take]
                view = view[take:]
                pos += take
            state.size = max(state.size, offset + len(data))
            return len(data)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            state = self._state(path)
            if length < state.size:
                for n in [n for n in state.pages if n * PAGE >= length]:
                    del state.pages[n]
                n, within = divmod(length, PAGE)
                if within:
                    page = self._page(path, state, n)
                    page[within:] = b"\0" * (PAGE - within)
                state.cut = min(state.cut, length)
            state.size = length
        return 0

    def flush(self, path, fh):
        return 0  # close() is not a flush to stable storage

    def release(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        with self.mutex:
            state = self.dirty.pop(path, None)
            if state is None:
                return 0
            fd = os.open(self._full(path), os.O_WRONLY)
            try:
                if state.cut < self._backing_size(path):
                    os.ftruncate(fd, state.cut)
                for n in sorted(state.pages):
                    start = n * PAGE
                    if start >= state.size:
                        continue
                    os.pwrite(fd, bytes(state.pages[n][: state.size - start]), start)
                os.ftruncate(fd, state.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0  # metadata is already in BACKING


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} BACKING MOUNTPOINT")
    backing, mountpoint = sys.argv[1:]
    fuse.FUSE(LossyFS(backing), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
