"""Passwords, tokens and permissions: who may do what."""
