"""neurodeploy: spiking networks from training to Loihi."""
__version__ = "0.1.0"
