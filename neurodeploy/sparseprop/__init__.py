"""SparseProp: exact event-driven simulation and training of sparse spiking networks
at O(log N) per network spike (Engelken, NeurIPS 2023). Needs numba, not torch."""
from neurodeploy.sparseprop._cache import invalidate_stale_kernels

invalidate_stale_kernels()

from neurodeploy.sparseprop.models import ModelParams, balanced_drive  # noqa: E402
from neurodeploy.sparseprop.network import CSR, Network  # noqa: E402
from neurodeploy.sparseprop.simulate import HeapSimulator, ReferenceSimulator, Spikes, initial_voltages  # noqa: E402

__all__ = ["ModelParams", "balanced_drive", "CSR", "Network", "HeapSimulator",
           "ReferenceSimulator", "Spikes", "initial_voltages"]
