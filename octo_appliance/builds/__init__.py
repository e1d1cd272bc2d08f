"""What the appliance builds and serves to targets: the runner zipapp (with its reproducible
bytecode), the agent executable, and their signed manifests.

Deliberately empty of imports: the agent imports ``octo_appliance.builds.manifest`` to check
what it downloads, and must not pull in the build machinery or the vault through this package.
"""
