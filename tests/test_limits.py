"""The memory a large allocation is checked against: the machine's free memory, or less where the
process's memory cgroup (a batch scheduler's job, a container) allows less."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scinrcodec import limits
from scinrcodec.errors import ResultTooLargeError

MB = 1 << 20


def _group(folder: Path, limit: str | None, used: int, cache: int, cache_key: str, names: tuple[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if limit is not None:
        (folder / names[0]).write_text(f"{limit}\n")
    (folder / names[1]).write_text(f"{used}\n")
    (folder / "memory.stat").write_text(f"cache {cache}\n{cache_key} {cache}\nrss {used - cache}\n")


def test_cgroup_v2_headroom_is_the_least_of_the_group_and_those_above_it(tmp_path):
    names, key = ("memory.max", "memory.current"), "inactive_file"
    _group(tmp_path / "mount", "max", 0, 0, key, names)  # the root: no limit
    _group(tmp_path / "mount/job", str(1000 * MB), 300 * MB, 100 * MB, key, names)  # 200 MB held: 800 left
    _group(tmp_path / "mount/job/step", "max", 50 * MB, 0, key, names)
    (tmp_path / "cgroup").write_text("0::/job/step\n")
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) == 800 * MB
    _group(tmp_path / "mount/job/step", str(500 * MB), 400 * MB, 0, key, names)  # the step's own limit is lower
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) == 100 * MB


def test_cgroup_v1_memory_controller_and_no_limit(tmp_path):
    names, key = ("memory.limit_in_bytes", "memory.usage_in_bytes"), "total_inactive_file"
    _group(tmp_path / "mount/memory", str(2**63 - 4096), 0, 0, key, names)  # v1's "no limit"
    _group(tmp_path / "mount/memory/slurm/job_7", str(8192 * MB), 8000 * MB, 7000 * MB, key, names)
    (tmp_path / "cgroup").write_text("5:cpuset:/slurm/job_7\n4:memory:/slurm/job_7\n0::/\n")
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) == 7192 * MB
    (tmp_path / "cgroup").write_text("4:memory:/\n")
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) is None


def test_a_container_namespace_reads_its_own_group_at_the_mount_root(tmp_path):
    """Inside a cgroup namespace the listed path need not exist under the mount: the mount's root is
    the container's own group, and its limit holds."""
    names, key = ("memory.max", "memory.current"), "inactive_file"
    _group(tmp_path / "mount", str(256 * MB), 56 * MB, 0, key, names)
    (tmp_path / "cgroup").write_text("0::/../../kubepods/pod1\n")
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) == 200 * MB
    (tmp_path / "cgroup").write_text("not a cgroup line\n")
    assert limits.cgroup_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mount")) is None
    assert limits.cgroup_headroom(str(tmp_path / "absent"), str(tmp_path / "mount")) is None


def test_allocations_are_checked_against_the_cgroup_where_it_allows_less(monkeypatch):
    monkeypatch.setattr(limits, "cgroup_headroom", lambda: 1 << 30)
    limits.check_allocation(1 << 30, "reading")
    with pytest.raises(ResultTooLargeError, match=r"reading needs 2\.0 GiB of memory, more than the 1\.0 GiB free"):
        limits.check_allocation(2 << 30, "reading")


def _own_v1_cgroup(controller: str) -> Path | None:
    """This process's v1 cgroup folder of `controller`, where this machine has one that can be written."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            for base in (controllers, controller):
                folder = Path("/sys/fs/cgroup", base, path.strip("/"))
                if folder.is_dir():
                    return folder if os.access(folder, os.W_OK) else None
    return None


def _in_new_cgroup(controller: str, settings: dict[str, str], code: str) -> subprocess.CompletedProcess:
    """`code` run by a fresh interpreter moved into a new child cgroup of `controller` with `settings`
    (skipping the test where the machine has no such cgroup to make), the group removed after."""
    own = _own_v1_cgroup(controller)
    if own is None:
        pytest.skip(f"no writable v1 {controller} cgroup on this machine")
    group = own / f"sinr-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        for name, value in settings.items():
            (group / name).write_text(value)
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot make a {controller} cgroup here ({exc})")
    try:
        moved = f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(__import__('os').getpid()))\n"
        return subprocess.run([sys.executable, "-c", moved + code], capture_output=True, text=True, timeout=120)
    finally:
        group.rmdir()


def test_a_real_memory_cgroup_limits_what_an_allocation_may_take():
    """A process in a memory cgroup of 512 MB on a machine with more free is refused 2 GiB with the
    library's error (without the cgroup's limit, Linux would have granted it and killed the process
    as it filled it)."""
    run = _in_new_cgroup("memory", {"memory.limit_in_bytes": str(512 * MB)},
                         "from scinrcodec import limits\nfrom scinrcodec.errors import ResultTooLargeError\n"
                         "assert limits.available_memory() < 512 * 2**20\n"
                         "try:\n    limits.check_allocation(2 << 30, 'reading')\n"
                         "except ResultTooLargeError as exc:\n    print(exc)\n")
    assert run.returncode == 0, run.stderr
    assert "reading needs 2.0 GiB of memory, more than the 0.5 GiB free to this process" in run.stdout, run.stdout


def test_cpu_quota_of_either_cgroup_version_bounds_the_default_threads(tmp_path):
    """A container's --cpus (cgroup v2 cpu.max, v1 cfs quota over period, rounded up; the least over
    the group and those above it) bounds jobs=None where the affinity shows every core."""
    (tmp_path / "v2/job").mkdir(parents=True)
    (tmp_path / "v2/cpu.max").write_text("max 100000\n")
    (tmp_path / "v2/job/cpu.max").write_text("150000 100000\n")
    (tmp_path / "v2.cgroup").write_text("0::/job\n")
    assert limits.cgroup_cpu_quota(str(tmp_path / "v2.cgroup"), str(tmp_path / "v2")) == 2
    (tmp_path / "v1/cpu,cpuacct/docker/abc").mkdir(parents=True)
    for folder, quota in (("v1/cpu,cpuacct", "-1"), ("v1/cpu,cpuacct/docker", "300000"),
                          ("v1/cpu,cpuacct/docker/abc", "400000")):
        (tmp_path / folder / "cpu.cfs_quota_us").write_text(quota + "\n")
        (tmp_path / folder / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "v1.cgroup").write_text("3:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n")
    assert limits.cgroup_cpu_quota(str(tmp_path / "v1.cgroup"), str(tmp_path / "v1")) == 3
    (tmp_path / "none.cgroup").write_text("3:cpu,cpuacct:/\n")
    assert limits.cgroup_cpu_quota(str(tmp_path / "none.cgroup"), str(tmp_path / "v1")) is None


def test_default_threads_are_the_affinity_bounded_by_the_quota(monkeypatch):
    """usable_cpus: the affinity, no more than the quota, at least one."""
    monkeypatch.setattr(limits.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for quota, expected in ((None, 4), (2, 2), (8, 4), (0, 1)):
        monkeypatch.setattr(limits, "_process_cpu_quota", lambda quota=quota: quota)
        assert limits.usable_cpus() == expected, quota


def test_a_real_cpu_quota_of_one_cpu_makes_jobs_one():
    run = _in_new_cgroup("cpu", {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"},
                         "from scinrcodec import limits\nimport os\n"
                         "print(len(os.sched_getaffinity(0)), limits.usable_cpus())\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[1] == "1", run.stdout
