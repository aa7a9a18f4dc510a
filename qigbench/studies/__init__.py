"""Measured studies of the methods themselves (what a variant agrees to and costs), run as
``python -m qigbench.studies.NAME``; the numbers they print are the ones the README cites."""
