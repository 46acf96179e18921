"""neurodeploy: spiking networks from training to Loihi.

``import neurodeploy as nd`` gives the public API (reference: ``docs/api.md``)::

    layers        nd.CubaDense, nd.CubaConv, nd.SpikingNetwork,
                  nd.CubaResidualBlock, nd.ResidualNetwork,
                  nd.CubaFloatParameters, nd.SurrogateParameters
    training      nd.hardware_aware
    quantise      nd.quantize(model) -> nd.Network
    files         nd.write_netx, nd.read_netx, nd.write_nir, nd.read_nir
    run           nd.simulate (bit-exact), nd.run_lava (Lava's CPU simulator)
    hardware      nd.map_network

Every name is imported on first use, so ``import neurodeploy`` loads neither torch
nor Lava.
"""
__version__ = "0.1.0"

#: public name -> (module, attribute), imported on first access
_EXPORTS = {
    "CubaDense": ("neurodeploy.train.layers", "CubaDense"),
    "CubaConv": ("neurodeploy.train.layers", "CubaConv"),
    "SpikingNetwork": ("neurodeploy.train.layers", "SpikingNetwork"),
    "CubaResidualBlock": ("neurodeploy.train.residual", "CubaResidualBlock"),
    "ResidualNetwork": ("neurodeploy.train.residual", "ResidualNetwork"),
    "Shortcut": ("neurodeploy.network", "Shortcut"),
    "CubaFloatParameters": ("neurodeploy.train.neuron", "CubaFloatParameters"),
    "SurrogateParameters": ("neurodeploy.train.neuron", "SurrogateParameters"),
    "Network": ("neurodeploy.network", "Network"),
    "NeurodeployError": ("neurodeploy.errors", "NeurodeployError"),
    "quantize": ("neurodeploy.api", "quantize"),
    "hardware_aware": ("neurodeploy.api", "hardware_aware"),
    "write_netx": ("neurodeploy.api", "write_netx"),
    "read_netx": ("neurodeploy.api", "read_netx"),
    "write_nir": ("neurodeploy.api", "write_nir"),
    "read_nir": ("neurodeploy.api", "read_nir"),
    "simulate": ("neurodeploy.api", "simulate"),
    "run_lava": ("neurodeploy.api", "run_lava"),
    "map_network": ("neurodeploy.api", "map_network"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'neurodeploy' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
