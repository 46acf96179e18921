"""A Lava process for Spiking Recurrent Cell neurons (imported lazily, by
:mod:`neurodeploy.lava_adapter` only: it imports Lava). Lava finds the process model
in ``models.py`` beside ``process.py``."""
