"""The backends behind :func:`~torch_geometric_hgt.functional.hgt_attention`,
one algorithm a module: ``vectorized`` (per-edge gathers, autograd),
``pair_fold`` (``'ultrafast'``: pair rows and the ``edge_op`` operator),
``chunked`` (``'memory_efficient'``: the same per chunk of targets,
recomputed in backward), and the whole-layer forms of the last two that
the pyHGT-style layers run (``pooled_layer``, ``target_chunked``)."""
