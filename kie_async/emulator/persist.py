"""An emulated account that outlives the process: balances, tasks (with their timeline) and uploads in a folder.

``kie-async ... --offline`` starts an emulator in each process; with a state folder the next process sees the
same account, so a task bought by one command is resumed by the next, as it would be on the real service::

    <state>/ledger.json        balances per key (read and rewritten under the lock)
    <state>/secret             the key that signs download-url links
    <state>/tasks/<id>.json    one task: what was bought and when (wall-clock), written once
    <state>/tasks/<id>.done    its terminal side effects (the callback) were claimed by one process
    <state>/uploads/           uploaded files
    <state>/.lock              flock target: a balance check-and-charge is one step for every process

Every file is written to a temporary name and moved into place with ``os.replace``, so a reader never sees
half a file. The books are small and each operation touches one file: the handlers call them directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kie_async.emulator.state import CreditLedger, EmulatedTask, TaskStore

LEDGER_FILE = "ledger.json"
SECRET_FILE = "secret"
TASKS_DIR = "tasks"
UPLOADS_DIR = "uploads"
LOCK_FILE = ".lock"

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path`` all at once: written beside it, flushed, then renamed over it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


class StateFolder:
    """The files of one emulated account; any number of processes may open the same folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tasks_dir = root / TASKS_DIR
        self.uploads_dir = root / UPLOADS_DIR

    def open(self, balances: dict[str, float]) -> bytes:
        """Create the folder (first use: with ``balances``); returns the link-signing secret. Keys the
        folder has not seen yet join with their starting balance; known keys keep what they have left."""
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        with self.lock():
            stored = self.read_balances()
            missing = {key: float(amount) for key, amount in balances.items() if key not in stored}
            if missing or not (self.root / LEDGER_FILE).exists():
                self.write_balances(stored | missing)
            secret_file = self.root / SECRET_FILE
            try:
                secret = bytes.fromhex(secret_file.read_text().strip())
            except (OSError, ValueError):
                secret = b""
            if len(secret) < 16:
                secret = secrets.token_bytes(32)
                write_atomic(secret_file, secret.hex().encode())
        return secret

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes (the kernel frees it if the holder dies); held for one small step."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)

    def read_balances(self) -> dict[str, float]:
        try:
            data = json.loads((self.root / LEDGER_FILE).read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"emulator state {self.root / LEDGER_FILE} is unreadable: {exc}") from None
        balances = data.get("balances") if isinstance(data, dict) else None
        if not isinstance(balances, dict):
            raise RuntimeError(f"emulator state {self.root / LEDGER_FILE} has no balances")
        return {str(key): float(value) for key, value in balances.items()}

    def write_balances(self, balances: dict[str, float]) -> None:
        write_atomic(self.root / LEDGER_FILE, json.dumps({"balances": balances}, indent=1).encode())

    def _task_file(self, task_id: str) -> Path | None:
        if not task_id or not task_id.isalnum():  # a task id from a request never names another path
            return None
        return self.tasks_dir / f"{task_id}.json"

    def save_task(self, task: EmulatedTask) -> None:
        path = self._task_file(task.task_id)
        if path is None:
            raise ValueError(f"task id {task.task_id!r} cannot name a file")
        data: dict[str, Any] = task.model_dump(mode="json", exclude={"started", "finalized"})
        write_atomic(path, json.dumps(data, ensure_ascii=False).encode())

    def load_task(self, task_id: str) -> EmulatedTask | None:
        """The stored task, its timeline moved onto this process's monotonic clock by wall-clock age."""
        path = self._task_file(task_id)
        if path is None:
            return None
        try:
            data = json.loads(path.read_bytes())
            age = max(0.0, time.time() - int(data["create_time_ms"]) / 1000)
            data["started"] = time.monotonic() - age
            data["finalized"] = self.is_final(task_id)
            return EmulatedTask.model_validate(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            return None  # a foreign or damaged file is not a task

    def task_ids(self) -> list[str]:
        try:
            return sorted(p.stem for p in self.tasks_dir.glob("*.json") if not p.name.startswith("."))
        except OSError:
            return []

    def is_final(self, task_id: str) -> bool:
        return (self.tasks_dir / f"{task_id}.done").exists()

    def claim_final(self, task_id: str) -> bool:
        """True for exactly one process: the one that delivers the task's terminal callback."""
        try:
            fd = os.open(self.tasks_dir / f"{task_id}.done", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        return True


class PersistentLedger(CreditLedger):
    """A :class:`CreditLedger` whose balances live in the state folder: every process charges the same account."""

    def __init__(self, folder: StateFolder) -> None:
        super().__init__({})
        self._folder = folder

    def knows(self, key: str) -> bool:
        return key in self._folder.read_balances()

    def keys(self) -> list[str]:
        return list(self._folder.read_balances())

    def balance(self, key: str) -> float:
        return self._folder.read_balances().get(key, 0.0)

    def set(self, key: str, amount: float) -> None:
        with self._folder.lock():
            self._folder.write_balances(self._folder.read_balances() | {key: float(amount)})

    def try_charge(self, key: str, amount: float) -> bool:
        with self._folder.lock():
            balances = self._folder.read_balances()
            current = balances.get(key)
            if current is None or current + 1e-9 < amount:
                return False
            balances[key] = round(current - amount, 6)
            self._folder.write_balances(balances)
        return True


class PersistentTaskStore(TaskStore):
    """A :class:`TaskStore` that writes each task to the state folder and finds tasks other processes sold."""

    def __init__(self, folder: StateFolder) -> None:
        super().__init__()
        self._folder = folder
        self._finished_elsewhere: set[str] = set()  # seen final on disk: not looked at again

    def add(self, task: EmulatedTask) -> None:
        self._folder.save_task(task)
        super().add(task)

    def get(self, task_id: str, owner: str | None = None) -> EmulatedTask | None:
        if super().get(task_id) is None:
            stored = self._folder.load_task(task_id)
            if stored is None:
                return None
            super().add(stored)
        return super().get(task_id, owner)

    def all(self) -> list[EmulatedTask]:
        for task_id in self._folder.task_ids():
            self.get(task_id)
        return super().all()

    def claim_final(self, task: EmulatedTask) -> bool:
        claimed = not task.finalized and self._folder.claim_final(task.task_id)
        task.finalized = True
        return claimed

    def adopt_unfinished(self) -> list[EmulatedTask]:
        """Tasks on disk this process has not seen whose terminal step nobody has claimed yet."""
        adopted = []
        for task_id in self._folder.task_ids():
            if task_id in self._finished_elsewhere or super().get(task_id) is not None:
                continue
            if self._folder.is_final(task_id):
                self._finished_elsewhere.add(task_id)
                continue
            task = self.get(task_id)
            if task is not None:
                adopted.append(task)
        return adopted
