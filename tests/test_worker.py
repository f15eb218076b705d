"""The worker's retry, backoff and lease logic, driven in-process with a stand-in analyser and an
explicit `now`; and the private attributes of other libraries it reads, which must not vanish."""
from concurrent.futures import Future

import pytest

from conftest import write_config
from facewatch.config import load_config
from facewatch.store import FileStat, Result, open_store
from facewatch.service.worker import Worker, backoff_s


class InlineAnalysers:
    """Analyses each claim at once, in this process, with `analyse(claim) -> Result`."""

    def __init__(self, analyse):
        self.analyse = analyse
        self.started = False
        self.calls = 0

    def start(self, wait=True):
        self.started = True

    def submit(self, claim):
        self.calls += 1
        future = Future()
        future.set_result(self.analyse(claim))
        return future

    def restart(self):
        return set()

    def kill_hung(self):
        pass

    def reading(self):
        return []

    def shutdown(self, wait):
        self.started = False


@pytest.fixture
def setup(tmp_path):
    made = []

    def make(analyse, **processing):
        config = load_config(str(write_config(tmp_path, processing=processing)))
        store = open_store(config.database)
        analysers = InlineAnalysers(analyse)
        worker = Worker(store, config, claimant="test:1", analysers=analysers)
        worker.start()
        made.append((worker, store))
        return worker, store, analysers

    yield make
    for worker, store in made:
        worker.stop()
        store.close()


def test_a_transient_error_backs_off_then_gives_up_after_max_attempts(setup):
    worker, store, analysers = setup(lambda c: Result(c.file_id, "retry", error="cannot read the file: I/O error"),
                                     max_attempts=4)
    store.enqueue([FileStat("/p/flaky.jpg", 1, 1)], now=0)
    now = 0.0
    for tries in range(1, 4):
        worker.step(now)  # claim, and the stand-in answers at once
        worker.step(now)  # save: back to the queue, later
        record = store.file_record("/p/flaky.jpg")
        assert (record.status, record.attempts) == ("pending", tries)
        assert store.next_ready_at() == now + backoff_s(tries) == now + 2 ** tries
        worker.step(now + backoff_s(tries) - 0.01)
        assert not worker.busy, "claimed before its backoff ended"
        now += backoff_s(tries)
    worker.step(now)
    worker.step(now)
    record = store.file_record("/p/flaky.jpg")
    assert record.status == "failed"
    assert record.error == "cannot read the file: I/O error (gave up after 4 attempts)"
    assert analysers.calls == 4 and store.next_ready_at() is None


def test_an_idle_daemon_loop_sleeps_until_a_retry_is_due_and_no_longer(setup):
    """The loop looks at the queue every IDLE_WAIT_S at most (new work wakes it); a file backing
    off shortens the sleep to when it is due, and what is due but cannot be claimed does not
    turn the sleep into a busy loop."""
    from facewatch.service.worker import IDLE_WAIT_S
    worker, store, _ = setup(lambda c: Result(c.file_id, "retry", error="cannot read the file: I/O error"))
    assert worker._idle_pause(0.0, burst=False) == IDLE_WAIT_S
    store.enqueue([FileStat("/p/flaky.jpg", 1, 1)], now=0)
    worker.step(0.0)
    worker.step(0.0)  # back to the queue, due at 2.0
    assert store.next_ready_at() == 2.0
    assert worker._idle_pause(0.5, burst=False) == pytest.approx(1.5)
    assert worker._idle_pause(2.5, burst=False) == IDLE_WAIT_S  # due, yet not claimed: no spinning
    assert worker._idle_pause(0.5, burst=True) == pytest.approx(1.5)
    from facewatch.store import StoreUnavailable
    from facewatch.service.worker import STORE_RETRY_S

    def unreadable(*args):
        raise StoreUnavailable("the database cannot be reached")
    store.next_ready_at = unreadable  # a queue that cannot be read is looked at again soon, not in a minute
    assert worker._idle_pause(0.5, burst=False) == worker._idle_pause(0.5, burst=True) == STORE_RETRY_S


def test_backoff_grows_and_is_capped():
    assert [backoff_s(n) for n in (1, 2, 3, 8, 9, 20)] == [2, 4, 8, 256, 300, 300]


def test_a_missing_file_under_an_unavailable_root_is_deferred_not_missing(setup, tmp_path):
    worker, store, _ = setup(lambda c: Result(c.file_id, "missing"))
    root = tmp_path / "photos"
    store.enqueue([FileStat(str(root / "a.jpg"), 1, 1)], now=0)
    root.rename(tmp_path / "unmounted")
    worker.step(0)
    worker.step(0)
    record = store.file_record(str(root / "a.jpg"))
    assert record.status == "pending" and record.attempts == 0  # an outage is not the file's fault
    assert store.next_ready_at() == 30.0


def test_a_save_the_database_refuses_is_retried_with_backoff(setup):
    from facewatch.store import StoreBusy
    worker, store, _ = setup(lambda c: Result(c.file_id, "done", size=1, mtime_ns=1, ctime_ns=1, width=2,
                                             height=2, content_hash="h"))
    store.enqueue([FileStat("/p/a.jpg", 1, 1)], now=0)
    real_save, refusals = store.save, []

    def save(*args):
        if len(refusals) < 2:
            refusals.append(args[-1])
            raise StoreBusy("the database is on a full disk")
        return real_save(*args)
    store.save = save
    worker.step(0)
    worker.step(0)  # refused: backs off 1 s
    worker.step(0.5)  # within the backoff: not even tried
    assert refusals == [0]
    worker.step(1.0)  # refused again: 2 s more
    worker.step(3.0)
    assert refusals == [0, 1.0] and store.file_record("/p/a.jpg").status == "done"


def test_the_private_attributes_read_from_other_libraries_are_still_there(tmp_path, photo_dir):
    """If a new Python or watchdog renames these, this test fails loudly, not the daemon quietly."""
    from facewatch.analysis.analysers import Analysers, pool_broken, pool_processes
    from facewatch.intake.watcher import _watched_folders
    from watchdog.observers.inotify import InotifyObserver
    from watchdog.events import FileSystemEventHandler
    config = load_config(str(write_config(tmp_path, processing={"workers": 1})))
    open_store(config.database).close()  # analysers read it
    analysers = Analysers(config)
    analysers.start()
    try:
        processes = pool_processes(analysers._pool)
        assert len(processes) == 1 and processes[0].is_alive()
        assert pool_broken(analysers._pool) is False
    finally:
        analysers.shutdown(wait=True)
    (tmp_path / "photos" / "sub").mkdir()
    observer = InotifyObserver()
    observer.schedule(FileSystemEventHandler(), str(tmp_path / "photos"), recursive=True)
    observer.start()
    try:
        assert _watched_folders(observer) == 2
    finally:
        observer.stop()
        observer.join()
