"""Files and their page cache, shared by every mm that maps them (address_space, i_mmap).

A shmem file (``shmem=True``) backs MAP_SHARED|MAP_ANONYMOUS mappings: its pages are
swap-backed, so MGLRU counts them as anon, as the kernel does.
"""

from __future__ import annotations

import numpy as np


class File:
    def __init__(self, fid: int, name: str, size_pages: int, shmem: bool = False):
        self.id, self.name, self.shmem = fid, name, shmem
        self.size_pages = size_pages
        self.pages = np.full(size_pages, -1, dtype=np.int64)  # page cache: offset -> pfn
        self.shadow = np.zeros(size_pages, dtype=np.int64)   # shadow entries of evicted pages
        self.content = np.zeros(size_pages, dtype=np.uint32)  # content tag of each offset's
        #                                                        data (0: never read)
        self.i_mmap: list = []  # VMAs mapping this file
        self.dirtied_when = None  # inode->dirtied_when (jiffies) while it has dirty pages

    @property
    def size(self) -> int:
        return self.size_pages << 12

    def __repr__(self) -> str:
        kind = "shmem" if self.shmem else "file"
        return f"File({self.id}, {self.name!r}, {kind}, {self.size_pages} pages)"
