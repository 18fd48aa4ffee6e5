"""Graphs the sampler and loader tests share: a heterogeneous graph with
every awkward case, its homogeneous form, and the same graph behind PyG's
testing feature and graph stores."""
import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.testing import MyFeatureStore, MyGraphStore

NODES = {'paper': 40, 'author': 30, 'venue': 5, 'lonely': 6}
EDGES = [('author', 'writes', 'paper'), ('paper', 'cites', 'paper'),
         ('paper', 'in', 'venue'), ('paper', 'written_by', 'author'),
         ('venue', 'has', 'paper'), ('author', 'knows', 'lonely')]


def make_graph(seed: int = 0, device: str = 'cpu', time: bool = False,
               edge_time: bool = False, weight: bool = False,
               channels: int = 8) -> HeteroData:
    """Power-law-ish degrees, self-loops and repeated edges among
    'cites', isolated papers (no in-edges of any type), a node type with
    no edges ('lonely': its one edge type is empty) and edge features;
    node times on every type but 'venue' (types without times are
    allowed), or times per edge, or positive and zero edge weights."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for nt, n in NODES.items():
        data[nt].x = torch.randn(n, channels, generator=g)
        if time and nt != 'venue':
            data[nt].time = torch.randint(0, 10, (n, ), generator=g)
    data['paper'].y = torch.randint(0, 3, (NODES['paper'], ), generator=g)
    for (s, r, t), e in zip(EDGES, [80, 70, 40, 80, 40, 0]):
        # skewed destinations; the last 5 papers receive nothing
        n_dst = NODES[t] - 5 if t == 'paper' else NODES[t]
        dst = (torch.rand(e, generator=g) ** 2 * n_dst).long()
        src = torch.randint(0, NODES[s], (e, ), generator=g)
        if r == 'cites':
            src[:5] = dst[:5]  # self-loops
            src[5:10], dst[5:10] = src[10], dst[10]  # a repeated edge
        data[s, r, t].edge_index = torch.stack([src, dst])
        data[s, r, t].edge_attr = torch.randn(e, 3, generator=g)
        if edge_time:
            data[s, r, t].time = torch.randint(0, 10, (e, ), generator=g)
        if weight:
            w = torch.rand(e, generator=g)
            data[s, r, t].weight = torch.where(w < 0.3, 0.0, w)
    return data.to(device)


def make_homogeneous(seed: int = 0, num_nodes: int = 50,
                     num_edges: int = 300) -> Data:
    """Self-loops, a repeated edge, nodes without in-edges, node times,
    edge times and weights, and features to slice."""
    g = torch.Generator().manual_seed(seed)
    dst = (torch.rand(num_edges, generator=g) ** 2 * (num_nodes - 5)).long()
    src = torch.randint(0, num_nodes, (num_edges, ), generator=g)
    src[:5] = dst[:5]
    src[5:8], dst[5:8] = src[8], dst[8]
    return Data(x=torch.randn(num_nodes, 4, generator=g),
                edge_index=torch.stack([src, dst]),
                edge_attr=torch.arange(num_edges),
                time=torch.randint(0, 10, (num_nodes, ), generator=g),
                edge_time=torch.randint(0, 10, (num_edges, ), generator=g),
                edge_weight=torch.rand(num_edges, generator=g))


def edge_lists(data: HeteroData) -> dict:
    return {et: data[et].edge_index.t().tolist() for et in data.edge_types}


def to_stores(data: HeteroData, layout: str = 'coo'):
    """``data`` in PyG's testing ``(MyFeatureStore, MyGraphStore)``: node
    attributes per type, every edge type in ``layout``."""
    feature_store, graph_store = MyFeatureStore(), MyGraphStore()
    for nt, store in data.node_items():
        for key, value in store.items():
            feature_store.put_tensor(value, group_name=nt, attr_name=key,
                                     index=None)
    for et, store in data.edge_items():
        size = (data[et[0]].num_nodes, data[et[2]].num_nodes)
        row, col = store.edge_index
        if layout == 'coo':
            index = (row, col)
        else:  # csc, by destination, sources kept in edge order
            perm = torch.sort(col, stable=True).indices
            ptr = torch.zeros(size[1] + 1, dtype=torch.long)
            ptr[1:] = torch.cumsum(torch.bincount(col, minlength=size[1]), 0)
            index = (row[perm], ptr)
        graph_store.put_edge_index(index, edge_type=et, layout=layout,
                                   size=size)
    return feature_store, graph_store
