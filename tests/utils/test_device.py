"""The memory a process may still take: Linux's MemAvailable, or a container's control group where it leaves less
(the kernel kills a process at its group's limit while MemAvailable still shows the host's memory)."""
from datafree.utils import device
from datafree.utils.device import available_memory, cgroup_memory_room

GIB = 2**30


def _group(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_a_cgroup_v2_limit_leaves_limit_less_usage_plus_the_reclaimable_cache(tmp_path):
    (tmp_path / "cgroup").write_text("0::/job/step\n")
    _group(tmp_path / "fs" / "job" / "step", {"memory.max": "max\n", "memory.current": f"{GIB}\n"})
    _group(tmp_path / "fs" / "job", {"memory.max": f"{8 * GIB}\n", "memory.current": f"{5 * GIB}\n",
                                     "memory.stat": f"anon 1\ninactive_file {GIB}\nactive_file 7\n"})
    # the step's own group has no limit ("max"): its parent's, 8 - 5 + 1 (cache the kernel reclaims first)
    assert cgroup_memory_room(tmp_path / "cgroup", tmp_path / "fs") == 4 * GIB


def test_a_cgroup_v1_limit_and_the_least_room_of_the_hierarchy(tmp_path):
    (tmp_path / "cgroup").write_text("5:cpu,cpuacct:/a\n4:memory:/docker/abc\n0::/\n")
    memory = tmp_path / "fs" / "memory"
    _group(memory / "docker" / "abc", {"memory.limit_in_bytes": f"{4 * GIB}\n", "memory.usage_in_bytes": f"{GIB}\n",
                                       "memory.stat": f"cache 5\ntotal_inactive_file {GIB // 2}\n"})
    _group(memory / "docker", {"memory.limit_in_bytes": f"{3 * GIB}\n", "memory.usage_in_bytes": f"{2 * GIB}\n"})
    _group(memory, {"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": f"{20 * GIB}\n"})
    assert cgroup_memory_room(tmp_path / "cgroup", tmp_path / "fs") == GIB  # docker's 3 - 2, under the job's 3.5


def test_a_container_that_sees_its_own_group_at_the_mounts_root(tmp_path):
    # the path names the host's group, which is not under the container's mount: its root is the group
    (tmp_path / "cgroup").write_text("0::/kubepods/pod1/c1\n")
    _group(tmp_path / "fs", {"memory.max": f"{2 * GIB}\n", "memory.current": f"{GIB}\n"})
    assert cgroup_memory_room(tmp_path / "cgroup", tmp_path / "fs") == GIB


def test_no_limit_or_nothing_readable_leaves_memavailable(tmp_path, monkeypatch):
    (tmp_path / "cgroup").write_text("0::/\n")
    _group(tmp_path / "fs", {"memory.max": "max\n", "memory.current": "5\n"})
    assert cgroup_memory_room(tmp_path / "cgroup", tmp_path / "fs") is None
    assert cgroup_memory_room(tmp_path / "nowhere", tmp_path / "fs") is None
    monkeypatch.setattr(device, "_meminfo_available", lambda: 20 * GIB)
    monkeypatch.setattr(device, "cgroup_memory_room", lambda: None)
    assert available_memory() == 20 * GIB
    monkeypatch.setattr(device, "cgroup_memory_room", lambda: 3 * GIB)  # a container's limit below the host's free
    assert available_memory() == 3 * GIB
    monkeypatch.setattr(device, "_meminfo_available", lambda: None)
    assert available_memory() == 3 * GIB
