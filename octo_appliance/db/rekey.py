"""Master-key rotation: re-seal every sealed value and file under a new key, crash-safely.

The protocol (docs/vault.md) keeps one invariant: at every instant, every sealed value and file
opens with one of the keys in the key file on disk.

1. If the key file already holds previous keys, an earlier rotation was interrupted: resume it
   with its new key. Otherwise generate a key and write the ring ``{current: new, previous:
   [old]}`` atomically.
2. Re-seal the values in every :data:`~octo_appliance.db.SEALED_COLUMNS` column that are not
   under the current key, in batches, each batch its own transaction. The relay's rows (calls
   between nodes) are deleted instead: only nodes killed in a call leave any while no node
   runs, and nothing can use them (:func:`~octo_appliance.db.relay.drop_relay_rows`).
3. Rewrap every sealed file under ``<data dir>/files`` that is not under the current key
   (temporary file + atomic rename).
4. Run the rekey hooks (:data:`REKEY_HOOKS`, :data:`HOOK_NAMES`): modules holding data under
   secrets derived from the master key (the TLS key file) re-encrypt it.
5. Write the ring ``{current: new}``: the old key is gone.

A crash anywhere leaves a ring that opens everything; running the rotation again finishes it.
It is an offline operation: a running server keeps sealing with the key it loaded at start, so
``master-key rotate`` refuses while a server holds the data dir or database
(:mod:`octo_appliance.db.in_use`).
"""

from __future__ import annotations

import fcntl
import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee

from octo_appliance.db import SEALED_COLUMNS, BaseModel
from octo_appliance.db.relay import drop_relay_rows
from octo_appliance.exceptions import VaultError
from octo_appliance.vault.files import (
    FILES_DIR_NAME,
    REKEY_SUFFIX,
    WRITING_SUFFIX,
    is_sealed_file,
    key_id_of_file,
    rewrap_file,
)
from octo_appliance.vault.keys import (
    KeyRing,
    MasterKey,
    find_key_file,
    key_from_env,
    read_keyring_file,
    write_keyring,
)
from octo_appliance.vault.values import Vault, token_prefix

#: ``hook(old_ring, new_ring, data_dir)``: ``old_ring`` holds the keys being retired (its
#: ``current`` is the key that was current before the rotation), ``new_ring`` only the new key.
#: A hook runs after values and files are re-sealed and before the old keys leave the key file.
#: It must write atomically (the data must open with a key of either ring at every instant)
#: and be idempotent: a resumed rotation runs it again, possibly on data already moved over.
RekeyHook = Callable[[KeyRing, KeyRing, Path], None]

#: Hooks that re-encrypt data protected by secrets derived from the master key
#: (:func:`octo_appliance.vault.keys.derive_secret`). Code that runs before a rotation may
#: append callables here; modules that must not import ``db`` are named in :data:`HOOK_NAMES`.
REKEY_HOOKS: list[RekeyHook] = []

#: ``"module:function"`` hooks resolved when a rotation starts (after :data:`REKEY_HOOKS`), so
#: lower layers (the TLS key file) take part without importing the database package.
HOOK_NAMES: list[str] = ["octo_appliance.certificate:reencrypt_key"]

#: ``progress(kind, done, total)`` with kind ``"values"`` or ``"files"``.
Progress = Callable[[str, int, int], None]

DEFAULT_BATCH_SIZE = 500
FILE_PROGRESS_EVERY = 50


@dataclass
class RotationResult:
    new_key_id: str
    retired_key_ids: list[str]
    resumed: bool
    values_resealed: int = 0
    #: relay rows (calls between nodes) that stopped nodes left, deleted
    relay_rows_dropped: int = 0
    files_resealed: int = 0
    #: Paths under ``files/`` that are not sealed files (left alone).
    files_skipped: list[Path] = field(default_factory=list)


def rekey_hooks() -> list[RekeyHook]:
    """:data:`REKEY_HOOKS` followed by the hooks named in :data:`HOOK_NAMES`, without repeats."""
    hooks = list(REKEY_HOOKS)
    for name in HOOK_NAMES:
        module_name, _, attribute = name.partition(":")
        hook = getattr(importlib.import_module(module_name), attribute)
        if hook not in hooks:
            hooks.append(hook)
    return hooks


@contextmanager
def rotation_lock(key_path: Path) -> Iterator[None]:
    """One rotation at a time per key file: two would each write their own new key."""
    lock_path = key_path.with_name(key_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VaultError(
                "another master-key rotation is running on this key file",
                hint="wait for it to finish; if it was stopped, run master-key rotate again",
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; the kernel also releases it if we die


def begin_rotation(key_path: Path) -> tuple[KeyRing, bool]:
    """The ring to rotate with, written to disk: ``(ring, resumed)``."""
    ring = read_keyring_file(key_path)
    if ring.rotating:
        return ring, True
    ring = KeyRing(MasterKey.generate(), (ring.current,))
    write_keyring(key_path, ring)
    return ring, False


def _pending(model: type[BaseModel], column: str, prefix: str) -> Any:
    """Rows whose value is set and not sealed under the key with ``prefix`` (peewee expression)."""
    value = getattr(model, column)
    return value.is_null(False) & (peewee.fn.SUBSTR(value, 1, len(prefix)) != prefix)


def _compare_and_set(
    db: peewee.Database, model: type[BaseModel], column: str
) -> tuple[str, Callable[[str, str, str], list[str]]]:
    """``UPDATE ... SET column = new WHERE id = ? AND column = old`` as SQL, built once.

    Built by peewee (so quoting and placeholders fit the backend) with marker values, then run
    with ``executemany``: building a query per row costs more than the database work. The
    ``column = old`` condition leaves a value someone changed meanwhile for the next batch.
    """
    value = getattr(model, column)
    markers = ("\0new", "\0id", "\0old")
    query = model.update({value: markers[0]}).where(
        (model.id == markers[1]) & (value == markers[2])
    )
    context: Any = db.get_sql_context()
    sql, params = context.sql(query).query()
    order = [markers.index(param) for param in params]

    def arrange(new: str, row_id: str, old: str) -> list[str]:
        given = (new, row_id, old)
        return [given[index] for index in order]

    return sql, arrange


def reseal_values(db: peewee.Database, vault: Vault, *, batch_size: int, progress: Progress) -> int:
    """Re-seal every sealed column value not under the vault's current key."""
    prefix = token_prefix(vault.current_key_id)
    total = sum(
        model.select().where(_pending(model, column, prefix)).count()
        for model, column in SEALED_COLUMNS
    )
    done = 0
    for model, column in SEALED_COLUMNS:
        field_ = getattr(model, column)
        update_sql, arrange = _compare_and_set(db, model, column)
        while True:
            with db.atomic():
                batch: Any = (
                    model.select(model.id, field_)
                    .where(_pending(model, column, prefix))
                    .order_by(model.id)
                    .limit(batch_size)
                    .tuples()
                )
                rows: list[tuple[str, str]] = list(batch)
                updates = []
                for row_id, token in rows:
                    aad = model(id=row_id).aad(column)
                    try:
                        resealed = vault.reseal(token, aad)
                    except VaultError as exc:
                        raise VaultError(
                            f"the sealed value {aad.decode()} does not open: {exc.message}",
                            hint="set that value again (or clear it), then run "
                            "'master-key rotate' again to resume",
                        ) from None
                    updates.append(arrange(resealed, row_id, token))
                if updates:
                    connection: Any = db
                    connection.cursor().executemany(update_sql, updates)
            if not rows:
                break
            done += len(rows)
            progress("values", done, max(total, done))
    if done == 0:
        progress("values", 0, 0)
    return done


def _sealed_files(files_dir: Path) -> Iterator[Path]:
    if not files_dir.is_dir():
        return
    for root, dirs, names in os.walk(files_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if name.endswith((WRITING_SUFFIX, REKEY_SUFFIX)) or path.is_symlink():
                continue
            if path.is_file():
                yield path


def rewrap_files(data_dir: Path, vault: Vault, *, progress: Progress) -> tuple[int, list[Path]]:
    """Rewrap every sealed file under ``files/`` not under the current key."""
    files_dir = data_dir / FILES_DIR_NAME
    pending: list[Path] = []
    skipped: list[Path] = []
    for path in _sealed_files(files_dir):
        if not is_sealed_file(path):
            skipped.append(path)
            continue
        try:
            key_id = key_id_of_file(path)
        except VaultError:
            key_id = ""  # a damaged header: rewrap_file reports it with the path
        if key_id != vault.current_key_id:
            pending.append(path)
    for done, path in enumerate(pending, start=1):
        try:
            rewrap_file(vault, path)
        except VaultError as exc:
            raise VaultError(
                f"{path.relative_to(data_dir)}: {exc.message}",
                hint="restore that file from a backup (or delete it if it is not needed), "
                "then run 'master-key rotate' again to resume",
            ) from None
        if done % FILE_PROGRESS_EVERY == 0 or done == len(pending):
            progress("files", done, len(pending))
    if not pending:
        progress("files", 0, 0)
    return len(pending), skipped


def remove_rotation_leftovers(data_dir: Path) -> list[Path]:
    """Delete the ``.rekeying`` copies an interrupted rotation left under ``files/``.

    Only a rotation writes them, and it runs alone (its locks, and ``db.in_use`` against a
    server), so whoever holds the data dir next may delete them: a resumed rotation at its
    start, or a server starting without finishing the rotation (abandoned). Returns them.
    """
    files_dir = data_dir / FILES_DIR_NAME
    if not files_dir.is_dir():
        return []
    removed = sorted(files_dir.rglob(f"*{REKEY_SUFFIX}"))
    for stale in removed:
        stale.unlink(missing_ok=True)
    return removed


def refuse_key_from_env(environ: Mapping[str, str] | None = None) -> None:
    """A key given by ``OCTO_MASTER_KEY`` lives outside the appliance: it cannot rotate it."""
    if key_from_env(environ):
        raise VaultError(
            "the master key comes from OCTO_MASTER_KEY, which a rotation cannot rewrite",
            hint="put the key in a key file (master_key_file), unset OCTO_MASTER_KEY, rotate, "
            "then distribute the new key (master-key show) to every node",
        )


def rotate_master_key(
    db: peewee.Database,
    data_dir: Path,
    *,
    key_file: str | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    environ: Mapping[str, str] | None = None,
    shared_dir: Path | None = None,
) -> RotationResult:
    """Rotate (or finish rotating) the master key in the key file; see the module docstring.
    ``shared_dir`` (several nodes' sealed files, docs/ha.md) is rewrapped like the data dir."""
    roots = [data_dir] + ([shared_dir] if shared_dir and shared_dir != data_dir else [])
    refuse_key_from_env(environ)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report: Progress = progress or (lambda kind, done, total: None)
    hooks = rekey_hooks()  # resolved first: a broken name fails before the key file changes
    key_path = find_key_file(data_dir, key_file)
    with rotation_lock(key_path):
        for root in roots:
            remove_rotation_leftovers(root)
        ring, resumed = begin_rotation(key_path)
        vault = Vault(ring)
        result = RotationResult(
            new_key_id=ring.current.key_id,
            retired_key_ids=[key.key_id for key in ring.previous],
            resumed=resumed,
        )
        with db.atomic():
            result.relay_rows_dropped = drop_relay_rows()
        result.values_resealed = reseal_values(db, vault, batch_size=batch_size, progress=report)
        for root in roots:
            resealed, skipped = rewrap_files(root, vault, progress=report)
            result.files_resealed += resealed
            result.files_skipped += skipped
        old_ring = KeyRing(ring.previous[0], ring.previous[1:])
        new_ring = KeyRing(ring.current)
        for hook in hooks:
            for root in roots:
                hook(old_ring, new_ring, root)
        write_keyring(key_path, new_ring)
    return result
