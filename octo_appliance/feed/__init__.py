"""The built-in package feed: packages named ``ID.VERSION.ext``, sealed by the vault on disk.

Modules: ``names`` (file names), ``archive`` (structure checks), ``limits`` (how far a
package may expand: archive bombs), ``sealed`` (random-access plaintext reader), ``storage``
(where sealed packages live), ``catalog`` (database writes), ``upload`` (streaming multipart
receive), ``store`` (:class:`PackageFeed`, the engine's read side) and ``delta`` (binary
deltas between versions). See docs/packages.md.

Deliberately empty of imports: the agent imports ``octo_appliance.feed.delta`` and must not
pull in the database or the vault through this package.
"""
