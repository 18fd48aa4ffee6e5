"""Weight exchange with PyG's :class:`torch_geometric.nn.HGTConv`.

Mapping (``R`` relations, head ``h``, relation ``r``, node type ``i``):

=========================================  ===================================
PyG ``HGTConv``                            this package (pyHGT layout)
=========================================  ===================================
``kqv_lin.lins[node_types[i]]`` rows
``[0:F]``, ``[F:2F]``, ``[2F:3F]``          ``k_linears.i``, ``q_linears.i``,
                                            ``v_linears.i``
``out_lin.lins[node_types[i]]``             ``a_linears.i``
``k_rel.weight[h * R + r]``                 ``relation_att[r, h]``
``v_rel.weight[h * R + r]``                 ``relation_msg[r, h]``
``p_rel['__'.join(edge_types[r])][0]``      ``relation_pri[r]``
``skip[node_types[i]]``                     ``skip[i]``
=========================================  ===================================

PyG has no LayerNorm and no dropout, so the layer gets ``use_norm=False``
and ``dropout=0``; PyG returns no output for node types that are no edge
type's destination, where this package returns the update of a zero
aggregate.
"""
from typing import List, Optional, Sequence, Tuple

import torch

from torch_geometric_hgt.conv.hetero_routes import relation_weights

#: PyG's ``(node_types, edge_types)``
Metadata = Tuple[List[str], List[Tuple[str, str, str]]]


def from_pyg(cls, conv, **kwargs):
    from torch_geometric.nn import HGTConv
    if not isinstance(conv, HGTConv):
        raise TypeError(f"'conv' must be a torch_geometric.nn.HGTConv "
                        f"(got {type(conv).__name__})")
    in_dims = set(conv.in_channels.values())
    if len(in_dims) != 1 or -1 in in_dims:
        raise ValueError(f"'conv' must have one int in_channels for every "
                         f"node type (got {conv.in_channels})")
    T, R = len(conv.node_types), len(conv.edge_types)
    F = conv.out_channels
    layer = cls(in_dims.pop(), F, T, R, conv.heads, dropout=0.0,
                use_norm=False, **kwargs)
    with torch.no_grad():
        for i, nt in enumerate(conv.node_types):
            kqv = conv.kqv_lin.lins[nt]
            for j, lins in enumerate((layer.k_linears, layer.q_linears,
                                      layer.v_linears)):
                lins[i].weight.copy_(kqv.weight[j * F:(j + 1) * F])
                lins[i].bias.copy_(kqv.bias[j * F:(j + 1) * F])
            layer.a_linears[i].load_state_dict(
                conv.out_lin.lins[nt].state_dict())
            layer.skip[i] = conv.skip[nt].reshape(())
        att, pri, msg = relation_weights(conv, conv.edge_types)
        layer.relation_att.copy_(att)
        layer.relation_pri.copy_(pri)
        layer.relation_msg.copy_(msg)
    return layer.eval()


def to_pyg(layer, metadata: Optional[Metadata] = None,
           relation_ids: Optional[Sequence[int]] = None):
    """Exports ``layer`` (``use_norm=False``) to PyG's ``HGTConv``.

    Args:
        metadata: ``(node_types, edge_types)``; node type ``i`` of the layer
            is ``node_types[i]``. Default: node types ``'0'..'T-1'`` and
            every ``(str(s), str(r), str(t))``, so any graph of the layer
            can be expressed.
        relation_ids: the layer's relation id of each PyG edge type. Default:
            ``int(edge_type[1])``.
    """
    from torch_geometric.nn import HGTConv
    if layer.use_norm:
        raise ValueError("PyG's HGTConv has no LayerNorm: export a layer "
                         "built with use_norm=False")
    T, R = layer.num_node_types, layer.num_relations
    if metadata is None:
        names = [str(t) for t in range(T)]
        metadata = (names, [(str(s), str(r), str(t)) for s in range(T)
                            for r in range(R) for t in range(T)])
    node_types, edge_types = metadata
    if len(node_types) != T:
        raise ValueError(f"'metadata' names {len(node_types)} node types, "
                         f"the layer has {T}")
    if relation_ids is None:
        relation_ids = [int(et[1]) for et in edge_types]
    conv = HGTConv(layer.in_dim, layer.out_dim, metadata, heads=layer.n_heads)
    rel = torch.as_tensor(list(relation_ids), dtype=torch.long)
    if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= R):
        raise ValueError(f"'relation_ids' must be in [0, {R})")
    F, H = layer.out_dim, layer.n_heads
    with torch.no_grad():
        w_kqv, b_kqv = layer.kqv_weight()
        for i, nt in enumerate(node_types):
            conv.kqv_lin.lins[nt].weight.copy_(w_kqv[i])
            conv.kqv_lin.lins[nt].bias.copy_(b_kqv[i])
            conv.out_lin.lins[nt].load_state_dict(
                layer.a_linears[i].state_dict())
            conv.skip[nt].fill_(float(layer.skip[i]))
        # PyG relation slot h * len(edge_types) + e
        conv.k_rel.weight.copy_(layer.relation_att[rel].transpose(0, 1)
                                .reshape(-1, F // H, F // H))
        conv.v_rel.weight.copy_(layer.relation_msg[rel].transpose(0, 1)
                                .reshape(-1, F // H, F // H))
        for e, et in enumerate(edge_types):
            conv.p_rel['__'.join(et)].copy_(
                layer.relation_pri[rel[e]].view(1, -1))
    return conv
