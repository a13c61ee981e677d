"""Tests of the scheduler layer (direct, slurm, pbs)."""
