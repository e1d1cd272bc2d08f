"""The built-in package feed: one row per package version, and the versions releases use.

A package's bytes live in a sealed file under ``<data dir>/files/packages`` (``file_name``,
relative to the data dir); the row keeps the SHA-256 and size of the plaintext so agents can
verify and cache by hash without the appliance decrypting anything. ``ReleasePackage`` rows are
written when a release is created and keep a used version from being deleted by accident.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, utcnow
from octo_appliance.db.deployments import Release


class Package(BaseModel):
    id_prefix = "pkg"

    package_id = peewee.CharField(max_length=200)
    version = peewee.CharField(max_length=100)
    #: ``zip``, ``tar`` or ``tar.gz`` (``.tgz`` uploads are stored as ``tar.gz``)
    format = peewee.CharField(max_length=16)
    #: SHA-256 (hex) of the plaintext
    sha256 = peewee.CharField(max_length=64, index=True)
    size = peewee.BigIntegerField()
    #: the sealed file, relative to the data dir (``files/packages/<random>.sealed``)
    file_name = peewee.CharField(max_length=300)
    uploaded_at = peewee.DateTimeField(default=utcnow)
    uploaded_by = peewee.CharField(max_length=100, default="")

    class Meta:
        indexes = ((("package_id", "version"), True),)


class ReleasePackage(BaseModel):
    """A package version a release deploys, as it was when the release was created."""

    id_prefix = "rpk"

    release = peewee.ForeignKeyField(Release, backref="packages", on_delete="CASCADE")
    step = peewee.CharField(max_length=200)
    package_id = peewee.CharField(max_length=200)
    version = peewee.CharField(max_length=100)
    sha256 = peewee.CharField(max_length=64)

    class Meta:
        indexes = ((("package_id", "version"), False),)
