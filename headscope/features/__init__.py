"""SAE features in SAELens format: load, train (sae-lens's trainer), index dashboards, view, steer, attribute.

See README.md for the file map. sae-lens is imported lazily by the modules that need it (it takes seconds)."""

from headscope.features.sites import KINDS, TRAIN_KINDS, Site, parse_hook_name, site

__all__ = ["KINDS", "TRAIN_KINDS", "Site", "parse_hook_name", "site"]
