"""How far a package may expand: the feed's defence against archive bombs.

A package is refused at upload when what it expands to passes either limit:

- ``max_expanded_mb``: the total, whatever the archive's size;
- ``max_expansion_ratio``: the expanded size over the archive's size. Below
  :data:`RATIO_FLOOR` of expanded data the ratio is not applied, so a small package holding a
  file of zeros (a sparse disk image, a padded test fixture) still passes.

Both fold into one byte cap per archive (:meth:`ArchiveLimits.cap`), which the checks in
``archive`` compare with the declared sizes (zip) or with the decompressed position as they
read (tar.gz), so reading stops as soon as the cap is passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from octo_appliance.config import Config
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.filesystem.disk_space import format_bytes

MIB = 1024 * 1024
#: expanded data below this is never refused for its ratio alone
RATIO_FLOOR = 64 * MIB
_HINT = (
    "check the package: it expands far beyond its size, as an archive bomb does; if it is "
    "genuine, raise {setting} (docs/configuration.md)"
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_expanded: int
    max_ratio: int

    @classmethod
    def from_settings(cls, config: Config | None = None) -> ArchiveLimits:
        """From a :class:`~octo_appliance.config.Config` (the defaults without one)."""
        config = config or Config()
        return cls(config.max_expanded_mb * MIB, config.max_expansion_ratio)

    def cap(self, size: int) -> int:
        """The most bytes an archive of ``size`` bytes may expand to."""
        return min(self.max_expanded, max(self.max_ratio * size, RATIO_FLOOR))

    def refuse(self, label: str, size: int, expanded: int, *, exact: bool) -> ValidationFailed:
        """The 422 for an archive of ``size`` bytes that expands to ``expanded`` bytes (a
        declared total when ``exact``, else how far reading got before it stopped)."""
        amount = f"{'' if exact else 'more than '}{format_bytes(expanded)}"
        if expanded > self.max_expanded:
            setting = "max_expanded_mb"
            message = (
                f"the {label} archive expands to {amount}, over the limit of "
                f"{format_bytes(self.max_expanded)} (setting {setting})"
            )
        else:
            setting = "max_expansion_ratio"
            message = (
                f"the {label} archive expands to {amount}, over {self.max_ratio} times its size "
                f"of {format_bytes(size)} (setting {setting})"
            )
        return ValidationFailed(
            message,
            details=[{"field": "file", "message": message}],
            hint=_HINT.format(setting=setting),
        )
