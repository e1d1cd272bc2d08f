"""``master-key show|rotate`` as real processes on SQLite and PostgreSQL, including a kill -9.

The invariant every test checks: each sealed value and file opens with a key in the key file on
disk, and after a finished rotation only the new key exists.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import peewee
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from octo_appliance import tls
from octo_appliance.appliance import open_appliance
from octo_appliance.builds.signing import SIGNING_KEY_AAD, signing_key_path
from octo_appliance.cli import main
from octo_appliance.config import load_config
from octo_appliance.db import Project, Variable, new_id
from octo_appliance.db import rekey as rekey_module
from octo_appliance.db.rekey import rotate_master_key, rotation_lock
from octo_appliance.exceptions import VaultError
from octo_appliance.testing import keep_key_beside
from octo_appliance.vault import KeyRing, MasterKey, Vault
from octo_appliance.vault.files import SealedWriter, key_id_of_file, read_sealed_file
from octo_appliance.vault.keys import read_keyring_file, write_keyring
from octo_appliance.vault.values import token_key_id

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Populated:
    """A closed appliance data dir with sealed values and files, and what they should open to."""

    data_dir: Path
    database: str | None
    db: peewee.Database
    values: dict[str, str] = field(default_factory=dict)
    files: dict[Path, tuple[bytes, bytes]] = field(default_factory=dict)

    @property
    def key_path(self) -> Path:
        return keep_key_beside(self.data_dir)

    @property
    def key_file(self) -> str:
        return str(self.key_path)

    def cli_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        return args + (["--database", self.database] if self.database else [])

    def assert_all_open(self, ring: KeyRing) -> dict[str, int]:
        """Every value and file opens with ``ring``; returns how many values use each key id."""
        vault = Vault(ring)
        by_key: dict[str, int] = {}
        self.db.connect(reuse_if_open=True)
        try:
            rows = list(Variable.select().where(Variable.sealed_value.is_null(False)))
            assert {row.id for row in rows} == set(self.values)
            for row in rows:
                assert vault.open(row.sealed_value, row.aad("sealed_value")) == self.values[row.id]
                kid = token_key_id(row.sealed_value)
                by_key[kid] = by_key.get(kid, 0) + 1
            plain = Variable.select().where(Variable.sealed_value.is_null()).count()
            assert plain == 5
        finally:
            self.db.close()
        for path, (aad, data) in self.files.items():
            assert read_sealed_file(vault, path, aad) == data
        return by_key

    def tls_key_opens_with(self, ring: KeyRing) -> str:
        """The id of the ring's key whose derived password opens the TLS private key."""
        data = (self.data_dir / tls.KEY_FILE_NAME).read_bytes()
        for key in ring.keys:
            try:
                load_pem_private_key(data, password=tls.key_password(key).encode())
            except ValueError:
                continue
            return key.key_id
        raise AssertionError("the TLS key opens with no key of the ring")


def _populate(data_dir: Path, database: str | None, count: int) -> Populated:
    keep_key_beside(data_dir)
    config = load_config({"data_dir": str(data_dir), "database": database}, environ={})
    appliance, _ = open_appliance(config, environ={"OCTO_ADMIN_PASSWORD": secrets.token_hex(8)})
    vault = appliance.vault
    tls.load_or_create_certificate(config, vault.ring)  # tls.key: sealed by a derived password
    result = Populated(data_dir, database, appliance.db)
    project = Project.create_new(name="shop")
    rows = []
    for index in range(count):
        var = Variable(id=new_id("var"), project=project, name=f"Secret{index}", sensitive=True)
        result.values[var.id] = f"s3cret-{index}-{secrets.token_hex(4)}"
        var.sealed_value = vault.seal(result.values[var.id], var.aad("sealed_value"))
        rows.append(var.__data__)
    for index in range(5):
        rows.append(
            Variable(id=new_id("var"), project=project, name=f"P{index}", value="x").__data__
        )
    with appliance.db.atomic():
        for start in range(0, len(rows), 500):
            Variable.insert_many(rows[start : start + 500]).execute()
    files_dir = data_dir / "files"
    for name, size in (("packages/app.1.0.0.zip", 200_000), ("logs/task_1.log", 10), ("e", 0)):
        data = os.urandom(size)
        with SealedWriter(vault, files_dir / name, name.encode()) as writer:
            writer.write(data)
        result.files[files_dir / name] = (name.encode(), data)
    (files_dir / "README.txt").write_text("not sealed")
    # the build-signing key the first start made is a sealed file like the others
    signing = signing_key_path(data_dir)
    result.files[signing] = (SIGNING_KEY_AAD, read_sealed_file(vault, signing, SIGNING_KEY_AAD))
    appliance.close()
    return result


@pytest.fixture
def populated(tmp_path: Path, database_url: str | None) -> Iterator[Populated]:
    result = _populate(tmp_path / "data", database_url, 1200)
    yield result
    result.db.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "octo_appliance", "master-key", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=REPO,
        timeout=300,
    )


def test_rotate_reseals_every_value_and_file(populated: Populated) -> None:
    old = read_keyring_file(populated.key_path)
    done = _cli("rotate", *populated.cli_args())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "re-sealed 500/1200 values",
        "re-sealed 1000/1200 values",
        "re-sealed 1200/1200 values",
    ]
    assert "re-sealed 4/4 files" in lines  # the three above and the build-signing key
    assert "left alone (not a sealed file): files/README.txt" in lines
    ring = read_keyring_file(populated.key_path)
    assert not ring.rotating and ring.current != old.current
    assert (
        f"rotated: new key id {ring.current.key_id}; back up the new key with master-key show"
        in (lines)
    )
    assert old.current.to_text() not in populated.key_path.read_text()
    assert populated.assert_all_open(ring) == {ring.current.key_id: 1200}
    assert {key_id_of_file(path) for path in populated.files} == {ring.current.key_id}
    assert populated.tls_key_opens_with(KeyRing(ring.current)) == ring.current.key_id
    assert (populated.data_dir / "files" / "README.txt").read_text() == "not sealed"
    with pytest.raises(VaultError):
        populated.assert_all_open(old)


def _read_line(fd: int) -> bytes:
    """One line, byte by byte, so nothing more is taken out of the pipe."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def test_rotation_killed_midway_keeps_everything_readable_and_resumes(
    tmp_path: Path, database_url: str | None
) -> None:
    populated = _populate(tmp_path / "data", database_url, 3000)
    original = read_keyring_file(populated.key_path)
    read_end, write_end = os.pipe()
    # A one-page pipe we stop reading after the first line: the rotation (300 progress lines)
    # blocks on stdout long before it could finish, so the kill always lands mid-rotation.
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    errors = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115
    command = [sys.executable, "-m", "octo_appliance", "master-key", "rotate", "--batch-size"]
    proc = subprocess.Popen(
        [*command, "10", *populated.cli_args()],
        stdout=write_end,
        stderr=errors,
        env=_env(),
        cwd=REPO,
    )
    os.close(write_end)
    try:
        first = _read_line(read_end)
    finally:
        proc.kill()
        proc.wait()
        os.close(read_end)
    errors.seek(0)
    assert first.startswith(b"re-sealed 10/3000 values"), errors.read()
    errors.close()

    crashed = read_keyring_file(populated.key_path)
    assert crashed.rotating and crashed.previous == (original.current,)
    by_key = populated.assert_all_open(crashed)
    assert by_key[crashed.current.key_id] >= 10 and by_key[original.current.key_id] > 0
    assert populated.tls_key_opens_with(crashed) == original.current.key_id

    done = _cli("rotate", *populated.cli_args())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("resuming an unfinished rotation\n")
    final = read_keyring_file(populated.key_path)
    assert final == KeyRing(crashed.current)  # the resumed run kept the key it had written
    assert populated.assert_all_open(final) == {final.current.key_id: 3000}
    assert populated.tls_key_opens_with(final) == final.current.key_id
    populated.db.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI runs: no OCTO_* setting from the outer environment leaks in."""
    for name in list(os.environ):
        if name.startswith("OCTO_"):
            monkeypatch.delenv(name)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process (same code path as the subprocess, without the start-up cost)."""
    code = main(["master-key", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_the_key_its_id_and_advice(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    populated = _populate(tmp_path / "data", None, 1)
    ring = read_keyring_file(populated.key_path)
    code, out, _ = _main(capsys, "show", "--data-dir", str(populated.data_dir))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"Master key (id {ring.current.key_id}")
    assert lines[1] == ring.current.to_text()
    assert any("offline" in line for line in lines)
    assert "rotation" not in out

    previous = MasterKey.generate()
    write_keyring(populated.key_path, KeyRing(ring.current, (previous,)))
    code, out, _ = _main(capsys, "show", "--data-dir", str(populated.data_dir))
    assert code == 0
    assert previous.to_text() in out and "rotation is unfinished" in out


def test_rotate_refuses_a_key_from_the_environment(tmp_path: Path) -> None:
    populated = _populate(tmp_path / "data", None, 1)
    before = populated.key_path.read_bytes()
    env_key = read_keyring_file(populated.key_path).current.to_text()
    done = _cli("rotate", *populated.cli_args(), OCTO_MASTER_KEY=env_key)
    assert done.returncode == 1
    assert "OCTO_MASTER_KEY" in done.stderr and "hint:" in done.stderr
    assert env_key not in done.stderr + done.stdout
    assert populated.key_path.read_bytes() == before


def test_rotate_errors_are_clear_and_change_nothing(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    populated = _populate(tmp_path / "data", None, 1)
    before = populated.key_path.read_bytes()
    data = ["--data-dir", str(populated.data_dir)]
    (tmp_path / "empty").mkdir()
    empty_db = tmp_path / "empty.db"
    peewee.SqliteDatabase(str(empty_db)).connect()
    cases = [
        (["--data-dir", str(tmp_path / "nowhere")], 2, "does not exist"),
        (["--data-dir", str(tmp_path / "empty")], 1, "no master key"),
        ([*data, "--database", "postgresql://postgres@127.0.0.1:1/octo"], 1, "cannot open the"),
        ([*data, "--database", f"sqlite:///{tmp_path / 'other.db'}"], 1, "no database at"),
        ([*data, "--database", f"sqlite:///{empty_db}"], 1, "no appliance schema"),
        ([*data, "--batch-size", "0"], 2, "--batch-size"),
    ]
    for args, expected_code, message in cases:
        code, out, err = _main(capsys, "rotate", *args)
        assert (code, message in err) == (expected_code, True), (args, err)
        assert "hint:" in err or expected_code == 2
        assert not out
    assert populated.key_path.read_bytes() == before
    assert not (tmp_path / "other.db").exists()


def test_hooks_run_once_values_moved_and_a_failing_hook_leaves_a_resumable_ring(
    populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[KeyRing, KeyRing, Path]] = []

    def hook(old_ring: KeyRing, new_ring: KeyRing, data_dir: Path) -> None:
        calls.append((old_ring, new_ring, data_dir))
        if len(calls) == 1:
            raise OSError("disk full")

    monkeypatch.setattr(rekey_module, "REKEY_HOOKS", [hook])
    original = read_keyring_file(populated.key_path)
    populated.db.connect(reuse_if_open=True)
    with pytest.raises(OSError):
        rotate_master_key(populated.db, populated.data_dir, key_file=populated.key_file, environ={})
    ring = read_keyring_file(populated.key_path)
    assert ring.rotating and populated.assert_all_open(ring) == {ring.current.key_id: 1200}

    events: list[tuple[str, int, int]] = []
    populated.db.connect(reuse_if_open=True)
    result = rotate_master_key(
        populated.db,
        populated.data_dir,
        key_file=populated.key_file,
        environ={},
        progress=lambda kind, done, total: events.append((kind, done, total)),
    )
    assert result.resumed and result.values_resealed == 0 and result.files_resealed == 0
    assert events == [("values", 0, 0), ("files", 0, 0)]
    assert len(calls) == 2
    old_ring, new_ring, data_dir = calls[1]
    assert old_ring.current == original.current
    assert new_ring == KeyRing(ring.current) == read_keyring_file(populated.key_path)
    assert data_dir == populated.data_dir


def test_a_second_rotation_at_the_same_time_is_refused(tmp_path: Path) -> None:
    populated = _populate(tmp_path / "data", None, 1)
    before = populated.key_path.read_bytes()
    populated.db.connect(reuse_if_open=True)
    with (
        rotation_lock(populated.key_path),
        pytest.raises(VaultError, match="another master-key rotation"),
    ):
        rotate_master_key(populated.db, populated.data_dir, key_file=populated.key_file, environ={})
    populated.db.close()
    assert populated.key_path.read_bytes() == before


def test_a_damaged_value_or_file_stops_the_rotation_with_its_name_and_it_resumes(
    tmp_path: Path,
) -> None:
    populated = _populate(tmp_path / "data", None, 20)
    files_dir = populated.data_dir / "files"
    stale = files_dir / "packages" / ".app.1.0.0.zip.0badc0de.rekeying"
    stale.write_bytes(b"left by a crashed rotation")
    populated.db.connect(reuse_if_open=True)
    victim = Variable.select().where(Variable.sealed_value.is_null(False)).get()
    good_token = victim.sealed_value
    Variable.update(sealed_value=good_token[:-6] + "AAAAAA").where(
        Variable.id == victim.id
    ).execute()

    with pytest.raises(VaultError, match=f"variable/{victim.id}/sealed_value") as caught:
        rotate_master_key(populated.db, populated.data_dir, key_file=populated.key_file, environ={})
    assert caught.value.hint and "resume" in caught.value.hint
    Variable.update(sealed_value=good_token).where(Variable.id == victim.id).execute()

    damaged = files_dir / "logs" / "task_1.log"
    raw = bytearray(damaged.read_bytes())
    raw[29] = ord("z")  # the key id no longer names a key
    damaged.write_bytes(bytes(raw))
    with pytest.raises(VaultError, match=r"files/logs/task_1\.log"):
        rotate_master_key(populated.db, populated.data_dir, key_file=populated.key_file, environ={})
    assert not stale.exists()
    ring = read_keyring_file(populated.key_path)
    assert ring.rotating
    damaged.unlink()
    del populated.files[damaged]
    assert populated.assert_all_open(ring)

    populated.db.connect(reuse_if_open=True)
    result = rotate_master_key(
        populated.db, populated.data_dir, key_file=populated.key_file, environ={}
    )
    populated.db.close()
    assert result.resumed and result.new_key_id == ring.current.key_id
    assert populated.assert_all_open(KeyRing(ring.current)) == {ring.current.key_id: 20}
