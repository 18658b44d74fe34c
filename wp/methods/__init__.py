"""Related compression methods that wp is compared against, one module per method.

- :mod:`wp.methods.prune`: magnitude pruning with retraining (Han et al. 2015)
- :mod:`wp.methods.ternary`: ternary weights (TWN thresholds), optional ternary activations (TWTA-Net)
- :mod:`wp.methods.valueset`: value-set weight search (SLB-style categorical search)
- :mod:`wp.methods.sharing`: retraining-free per-layer weight sharing (Dupuis et al. 2022)

Each module holds the method's math as small functions and its storage as a
:class:`wp.compression.Footprint`; the jobs in ``wp/compare/`` run them.
"""
