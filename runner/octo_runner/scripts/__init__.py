"""Running one script on the target: launch (interpreter + helpers), output, the host loop."""
