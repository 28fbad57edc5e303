"""Rendering for people: rich tables for the terminal, task graphs as SVG (pure).

Imports no other swarmlog package; imported by the CLI and the harness.
"""
