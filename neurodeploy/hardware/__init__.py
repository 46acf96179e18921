"""Hardware targets and deployment: configs (``hw_configs/*.yaml``), the mapper
(placement, fit checks, activity -> energy estimate), Loihi 2 detection and
deployment, and self-contained deployment bundles. Lava is imported only
through :mod:`neurodeploy.lava_adapter`."""
