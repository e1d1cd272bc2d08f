"""Receive ``multipart/form-data`` with a package in the field ``file``, as it streams in.

python-multipart's push parser gets the body piece by piece; the ``file`` part's bytes go
straight into an :class:`~octo_appliance.feed.sealed_files.IncomingPackage` (sealed, hashed,
counted against ``max_package_mb``), so no plaintext reaches the disk and memory holds one
piece at a time. The file name is parsed as soon as the part's headers are in, so a bad name
is refused before the body is read. Other form fields are tolerated (a few KiB) and ignored.

Synchronous: the API feeds it from worker threads, one call at a time.
"""

from __future__ import annotations

from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from octo_appliance.exceptions import BadRequest, ValidationFailed
from octo_appliance.feed.limits import ArchiveLimits
from octo_appliance.feed.names import PackageName, parse_file_name
from octo_appliance.feed.sealed_files import IncomingPackage, ReceivedPackage
from octo_appliance.vault import Vault

FILE_FIELD = "file"
MAX_OTHER_FIELD_BYTES = 64 * 1024
_MULTIPART_HINT = (
    "send multipart/form-data with the package in a form field named 'file', e.g. "
    "curl -F file=@MyApp.1.0.0.zip"
)


def _field_error(message: str, hint: str = _MULTIPART_HINT) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": FILE_FIELD, "message": message}], hint=hint)


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary, or 400 when the body is not ``multipart/form-data``."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("the upload must be multipart/form-data", hint=_MULTIPART_HINT)
    if len(boundary) > 70:
        raise BadRequest("the multipart boundary is over 70 characters", hint=_MULTIPART_HINT)
    return boundary


class MultipartUpload:
    """One upload in progress: :meth:`feed` pieces, then :meth:`finish` (or :meth:`abort`)."""

    def __init__(
        self,
        vault: Vault,
        data_dir: Path,
        content_type: str,
        limit_bytes: int | None,
        limits: ArchiveLimits | None = None,
    ) -> None:
        self._vault = vault
        self._data_dir = data_dir
        self._limit = limit_bytes
        self._limits = limits
        self._parser = MultipartParser(
            boundary_of(content_type),
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._file_done = False
        self._other_bytes = 0
        self._ended = False
        self.incoming: IncomingPackage | None = None

    @property
    def name(self) -> PackageName | None:
        """The package's name, once the file part's headers arrived."""
        return self.incoming.name if self.incoming is not None else None

    # -- driving -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._ended:
            return  # the epilogue after the closing boundary is ignored, as RFC 2046 says
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise BadRequest(
                f"the multipart body is malformed: {str(exc)[:200]}", hint=_MULTIPART_HINT
            ) from None

    def finish(self) -> ReceivedPackage:
        """Check the body was complete and seal, check and return the package."""
        self._parser.finalize()
        if self.incoming is None:
            raise _field_error("the upload has no form field 'file' holding a package file")
        if not self._ended or not self._file_done:
            raise BadRequest(
                "the multipart body ended before its closing boundary (the upload was cut short)",
                hint="upload the file again",
            )
        return self.incoming.finish()

    def abort(self) -> None:
        if self.incoming is not None:
            self.incoming.abort()

    # -- parser callbacks --------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        _kind, options = parse_options_header(disposition)
        if options.get(b"name") != FILE_FIELD.encode():
            self._in_file = False
            return
        if self.incoming is not None:
            raise _field_error("the upload has more than one 'file' field; send one package")
        raw_name = options.get(b"filename")
        if not raw_name:
            raise _field_error(
                "the form field 'file' is not a file (it has no filename)",
                hint="send the package as a file part, e.g. curl -F file=@MyApp.1.0.0.zip",
            )
        try:
            file_name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise _field_error("the file name is not valid UTF-8") from None
        name = parse_file_name(file_name)
        self.incoming = IncomingPackage(
            self._vault, self._data_dir, name, self._limit, self._limits
        )
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.incoming is not None
            self.incoming.write(memoryview(data)[start:end])
            return
        self._other_bytes += end - start
        if self._other_bytes > MAX_OTHER_FIELD_BYTES:
            raise BadRequest(
                f"the form fields besides 'file' hold over {MAX_OTHER_FIELD_BYTES} bytes",
                hint="send only the 'file' field",
            )

    def _part_end(self) -> None:
        if self._in_file:
            self._file_done = True
        self._in_file = False

    def _end(self) -> None:
        self._ended = True
