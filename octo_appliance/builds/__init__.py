"""What the appliance builds and serves to targets: the agent executable and signed manifests.

Deliberately empty of imports: the agent imports ``octo_appliance.builds.manifest`` to check
what it downloads, and must not pull in the build machinery or the vault through this package.
"""
