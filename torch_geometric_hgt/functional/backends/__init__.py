"""The backends behind :func:`~torch_geometric_hgt.functional.hgt_attention`
(``functional.dispatch`` lists them), one algorithm a module."""
