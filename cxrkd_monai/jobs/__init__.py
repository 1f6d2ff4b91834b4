"""Jobs built on the bundles: the demo (``cxrkd demo``, ``make demo``) and the real-data results (``make results``)."""
