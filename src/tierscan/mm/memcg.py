"""The memory cgroup tree. Each memcg has one lruvec per node (mm/memcontrol.c).

Ids follow the kernel: with memcg enabled the root gets id 1 and children the next free ids
(mem_cgroup_alloc's xa_alloc over [1, MEM_CGROUP_ID_MAX]); with memcg disabled
(``cgroup_disable=memory``) there is only the root, and its id is 0 (mglru-spec §8.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEM_CGROUP_ID_MAX = (1 << 16) - 1
PAGE_COUNTER_MAX = (1 << 63) - 1 >> 12   # LONG_MAX / PAGE_SIZE: "max"


@dataclass(eq=False)
class MemCgroup:
    id: int
    name: str
    parent: "MemCgroup | None" = None
    children: list["MemCgroup"] = field(default_factory=list)
    online: bool = True
    # memory.min / memory.low / memory.high / memory.max in pages (mm/memcontrol.py);
    # PAGE_COUNTER_MAX is "max" (no limit, no protection for min/low at 0)
    memory_min: int = 0
    memory_low: int = 0
    memory_high: int = PAGE_COUNTER_MAX
    memory_max: int = PAGE_COUNTER_MAX

    @property
    def path(self) -> str:
        """The cgroup path as lru_gen prints it: "/" for the root, "/a/b" below it."""
        if self.parent is None:
            return "/"
        parent = self.parent.path
        return (parent if parent != "/" else "") + "/" + self.name

    def iter_tree(self):
        """mem_cgroup_iter() order: pre-order, parents before children, children in creation order."""
        yield self
        for child in self.children:
            yield from child.iter_tree()

    def __repr__(self) -> str:
        return f"MemCgroup(id={self.id}, path={self.path!r})"


class MemcgTree:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.root = MemCgroup(id=1 if enabled else 0, name="")
        self.by_id = {self.root.id: self.root}

    def create(self, name: str, parent: MemCgroup | None = None) -> MemCgroup:
        from ..errors import ConfigError

        if not self.enabled:
            raise ConfigError("memcg is disabled in this kernel (memcg=False); cannot create a cgroup",
                              field="memcg")
        parent = parent or self.root
        if not name or "/" in name:
            raise ConfigError(f"bad cgroup name {name!r}: expected a non-empty name without '/'",
                              field="memcg")
        if any(c.name == name for c in parent.children):
            raise ConfigError(f"cgroup {name!r} already exists under {parent.path}", field="memcg")
        new_id = next(i for i in range(1, MEM_CGROUP_ID_MAX + 1) if i not in self.by_id)
        memcg = MemCgroup(id=new_id, name=name, parent=parent)
        parent.children.append(memcg)
        self.by_id[new_id] = memcg
        return memcg

    def __iter__(self):
        return self.root.iter_tree()
