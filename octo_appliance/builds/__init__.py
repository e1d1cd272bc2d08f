"""Builds the appliance serves to targets: the runner zipapp (and its reproducible bytecode)."""
