"""NeighborLoader as PyG's: one equivalent of each case of PyG's
``test/loader/test_neighbor_loader.py`` (2.8.0; its two cases that call
pyg-lib and torch-sparse kernels directly are covered by the exact
comparisons with the reference in ``tests/sampler``), on our sampler."""
import numpy as np
import pytest
import torch
from conftest import DEVICES
from graphs import to_stores
from torch_geometric.data import Data, HeteroData
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import GraphConv, to_hetero
from torch_geometric.testing import MyFeatureStore, MyGraphStore
from torch_geometric.utils import is_undirected, sort_edge_index

from torch_geometric_hgt.loader import NeighborLoader
from torch_geometric_hgt.sampler import NeighborSampler

SUBGRAPHS = ['directional', 'bidirectional', 'induced']


def random_edges(num_src, num_dst, num_edges, g, dtype=torch.long):
    return torch.stack([torch.randint(num_src, (num_edges, ), generator=g),
                        torch.randint(num_dst, (num_edges, ), generator=g)
                        ]).to(dtype)


def edges_exist(local, full, src_ids, dst_ids):
    """Every local edge, mapped through the node ids, is an edge of
    ``full``."""
    pairs = set(map(tuple, full.t().tolist()))
    mapped = torch.stack([src_ids[local[0]], dst_ids[local[1]]])
    return all(tuple(p) in pairs for p in mapped.t().tolist())


def paper_author_graph(dtype=torch.long, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['paper'].x = torch.arange(100)
    data['author'].x = torch.arange(100, 300)
    for (s, d, n_s, n_d, n, off) in [('paper', 'paper', 100, 100, 500, 0),
                                     ('paper', 'author', 100, 200, 1000, 500),
                                     ('author', 'paper', 200, 100, 1000,
                                      1500)]:
        data[s, 'to', d].edge_index = random_edges(n_s, n_d, n, g, dtype)
        data[s, 'to', d].edge_attr = torch.arange(off, off + n)
    return data


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.int64, torch.int32])
@pytest.mark.parametrize('subgraph_type', SUBGRAPHS)
@pytest.mark.parametrize('filter_per_worker', [None, True, False])
def test_homo_neighbor_loader_basic(device, dtype, subgraph_type,
                                    filter_per_worker):
    g = torch.Generator().manual_seed(0)
    data = Data(x=torch.arange(100, device=device),
                edge_index=random_edges(100, 100, 500, g, dtype).to(device),
                edge_attr=torch.arange(500, device=device))
    loader = NeighborLoader(data, [5, 5], batch_size=20,
                            subgraph_type=subgraph_type,
                            filter_per_worker=filter_per_worker)
    assert str(loader) == 'NeighborLoader()' and len(loader) == 5
    assert loader([0]).n_id[:1].tolist() == [0]
    for i, batch in enumerate(loader):
        assert isinstance(batch, Data) and batch.x.device == data.x.device
        assert batch.n_id.shape == (batch.num_nodes, )
        assert batch.input_id.numel() == batch.batch_size == 20
        assert torch.equal(batch.x[:20].cpu(), torch.arange(20 * i,
                                                            20 * i + 20))
        ei = batch.edge_index
        assert ei.device == data.x.device
        assert ei.numel() == 0 or (0 <= ei.min() and
                                   ei.max() < batch.num_nodes)
        assert batch.edge_attr.size(0) == ei.size(1)
        if subgraph_type != 'bidirectional':
            assert batch.e_id.shape == (batch.num_edges, )
            assert torch.equal(batch.edge_attr, data.edge_attr[batch.e_id])
            assert edges_exist(ei.cpu(), data.edge_index.cpu(),
                               batch.x.cpu(), batch.x.cpu())


@pytest.mark.parametrize('dtype', [torch.int64, torch.int32])
@pytest.mark.parametrize('subgraph_type', SUBGRAPHS)
def test_hetero_neighbor_loader_basic(subgraph_type, dtype):
    data = paper_author_graph(dtype)
    with pytest.raises(ValueError, match='hops must be the same'):
        NeighborLoader(data, {('paper', 'to', 'paper'): [-1],
                              ('paper', 'to', 'author'): [-1, -1],
                              ('author', 'to', 'paper'): [-1, -1]},
                       input_nodes='paper', batch_size=20)
    loader = NeighborLoader(data, [10, 10], input_nodes='paper',
                            batch_size=20, subgraph_type=subgraph_type)
    assert str(loader) == 'NeighborLoader()' and len(loader) == 5
    offset = {'paper': 0, 'author': 100}
    for batch in loader:
        assert batch.input_type == 'paper'
        assert set(batch.node_types) == {'paper', 'author'}
        assert batch['paper'].batch_size == 20
        assert batch['paper'].input_id.numel() == 20
        for nt, lo in offset.items():
            assert batch[nt].n_id.shape == (batch[nt].num_nodes, )
            assert torch.equal(batch[nt].x, data[nt].x[batch[nt].n_id])
        assert set(batch.edge_types) == set(data.edge_types)
        for et in data.edge_types:
            ei = batch[et].edge_index
            assert ei[0].max() < batch[et[0]].num_nodes
            assert ei[1].max() < batch[et[2]].num_nodes
            if subgraph_type != 'bidirectional':
                assert batch[et].e_id.shape == (ei.size(1), )
                assert torch.equal(batch[et].edge_attr,
                                   data[et].edge_attr[batch[et].e_id])
                assert edges_exist(ei, data[et].edge_index,
                                   batch[et[0]].x - offset[et[0]],
                                   batch[et[2]].x - offset[et[2]])
            else:
                # PyG drops edge ids and attributes of merged directions
                assert 'e_id' not in batch[et]
                assert 'edge_attr' not in batch[et]
        if subgraph_type == 'bidirectional':
            assert is_undirected(batch['paper', 'paper'].edge_index)
            pa = batch['paper', 'to', 'author'].edge_index
            ap = batch['author', 'to', 'paper'].edge_index
            assert torch.equal(pa, sort_edge_index(ap.flip([0]),
                                                   sort_by_row=False))
        assert not batch.has_isolated_nodes()


class GNN(torch.nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = GraphConv(in_channels, 16)
        self.conv2 = GraphConv(16, out_channels)

    def forward(self, x, edge_index, edge_weight=None):
        x = self.conv1(x, edge_index, edge_weight).relu()
        return self.conv2(x, edge_index, edge_weight)


@pytest.mark.parametrize('subgraph_type', SUBGRAPHS)
def test_homo_neighbor_loader_on_karate(subgraph_type):
    """Every neighbour of every node up to two hops: a 2-layer GNN gives
    the full graph's outputs at the seeds."""
    dataset = KarateClub()
    data = dataset[0]
    torch.manual_seed(0)
    data.edge_weight = torch.rand(data.num_edges)
    seeds = torch.arange(5, 8)
    loader = NeighborLoader(data, [-1, -1], input_nodes=seeds,
                            batch_size=3, subgraph_type=subgraph_type)
    assert len(loader) == 1
    batch = next(iter(loader))
    model = GNN(dataset.num_features, dataset.num_classes)
    full = model(data.x, data.edge_index, data.edge_weight)[seeds]
    # bidirectional batches carry no edge attributes (PyG's rule)
    weight = None if subgraph_type == 'bidirectional' else batch.edge_weight
    if weight is None:
        full = model(data.x, data.edge_index)[seeds]
    out = model(batch.x, batch.edge_index, weight)[:batch.batch_size]
    torch.testing.assert_close(out, full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('subgraph_type', SUBGRAPHS)
def test_hetero_neighbor_loader_on_karate(subgraph_type):
    dataset = KarateClub()
    data = dataset[0]
    hetero = HeteroData()
    hetero['v'].x = data.x
    hetero['v', 'v'].edge_index = data.edge_index
    seeds = torch.arange(5, 8)
    batch = next(iter(NeighborLoader(hetero, [-1, -1], batch_size=3,
                                     input_nodes=('v', seeds),
                                     subgraph_type=subgraph_type)))
    torch.manual_seed(0)
    model = GNN(dataset.num_features, dataset.num_classes)
    hetero_model = to_hetero(model, hetero.metadata())
    full = model(data.x, data.edge_index)[seeds]
    out = hetero_model(batch.x_dict, batch.edge_index_dict)['v'][:3]
    torch.testing.assert_close(out, full, atol=1e-6, rtol=1e-5)


def test_temporal_hetero_neighbor_loader_on_karate():
    data = KarateClub()[0]
    hetero = HeteroData()
    hetero['v'].x = data.x
    hetero['v'].time = torch.arange(data.num_nodes, 0, -1)
    hetero['v', 'v'].edge_index = data.edge_index
    loader = NeighborLoader(hetero, [-1, -1], input_nodes='v',
                            time_attr='time', batch_size=1)
    sampled = 0
    for batch in loader:
        assert (batch['v'].time[1:] <= batch['v'].time[0]).all()
        sampled += batch['v'].num_nodes - 1
    assert sampled > 0


def test_custom_neighbor_loader():
    """A homogeneous graph in PyG's testing stores gives batches of the
    same sizes and features as the graph itself."""
    g = torch.Generator().manual_seed(1)
    x = y = torch.arange(100, 300)
    edge_index = random_edges(100, 100, 500, g).unique(dim=1)
    edge_index = edge_index[:, torch.randperm(edge_index.size(1),
                                              generator=g)]
    feature_store, graph_store = MyFeatureStore(), MyGraphStore()
    feature_store.put_tensor(x, group_name=None, attr_name='x', index=None)
    feature_store.put_tensor(y, group_name=None, attr_name='y', index=None)
    graph_store.put_edge_index((edge_index[0], edge_index[1]),
                               edge_type=None, layout='coo', size=(100, 100))
    data = Data(x=x, y=y, edge_index=edge_index, num_nodes=200)
    kw = dict(batch_size=20, input_nodes=torch.arange(100),
              num_neighbors=[-1, -1])
    loader1 = NeighborLoader(data, **kw)
    loader2 = NeighborLoader((feature_store, graph_store), **kw)
    assert str(loader1) == str(loader2) and len(loader1) == len(loader2)
    for b1, b2 in zip(loader1, loader2):
        assert b1.num_nodes == b2.num_nodes
        assert b1.num_edges == b2.num_edges
        assert b1.batch_size == b2.batch_size
        assert torch.equal(b1.x.sort().values, b2.x.sort().values)
        assert torch.equal(b1.y.sort().values, b2.y.sort().values)


@pytest.mark.parametrize('layout', ['coo', 'csc'])
def test_custom_hetero_neighbor_loader(layout):
    data = paper_author_graph()
    for store in data.edge_stores:
        del store.edge_attr  # stores hold no edge attributes
    kw = dict(batch_size=20, input_nodes=('paper', range(100)),
              num_neighbors=[-1, -1])
    loader1 = NeighborLoader(data, **kw)
    loader2 = NeighborLoader(to_stores(data, layout), **kw)
    assert str(loader1) == str(loader2) and len(loader1) == len(loader2)
    for b1, b2 in zip(loader1, loader2):
        assert b1['paper'].batch_size == b2['paper'].batch_size
        for nt in data.node_types:
            assert torch.equal(b1[nt].x.sort().values,
                               b2[nt].x.sort().values)
        for et in data.edge_types:
            assert b1[et].num_edges == b2[et].num_edges


def test_custom_hetero_neighbor_loader_duplicate():
    """Seeds repeat nothing: ten seeds of a ten-node type, all of its edges
    among them."""
    g = torch.Generator().manual_seed(2)
    edge_index = random_edges(10, 10, 20, g).unique(dim=1)
    data = HeteroData()
    data['user'].x = torch.arange(10)
    data['user', 'user', 'user'].edge_index = edge_index
    batch = next(iter(NeighborLoader(to_stores(data), [-1, -1],
                                     input_nodes=('user', range(10)),
                                     batch_size=10)))
    assert batch.node_types == ['user'] and batch['user'].num_nodes == 10
    assert batch.edge_types == [('user', 'user', 'user')]
    assert batch['user', 'user'].num_edges == edge_index.size(1)


def test_temporal_custom_neighbor_loader_on_karate():
    data = KarateClub()[0]
    hetero = HeteroData()
    hetero['v'].x = data.x
    hetero['v'].time = torch.arange(data.num_nodes, 0, -1)
    hetero['v', 'to', 'v'].edge_index = data.edge_index
    kw = dict(num_neighbors=[-1, -1], input_nodes='v', time_attr='time',
              batch_size=128)
    for b1, b2 in zip(NeighborLoader(hetero, **kw),
                      NeighborLoader(to_stores(hetero), **kw)):
        assert torch.equal(b1['v'].time, b2['v'].time)


def test_memmap_neighbor_loader(tmp_path):
    path = str(tmp_path / 'x.npy')
    x = np.memmap(path, dtype=np.float32, mode='w+', shape=(100, 32))
    x[:] = np.random.default_rng(0).standard_normal((100, 32))
    g = torch.Generator().manual_seed(3)
    data = Data(x=np.memmap(path, dtype=np.float32, mode='r',
                            shape=(100, 32)),
                edge_index=random_edges(100, 100, 500, g))
    assert data.num_nodes == 100
    batch = next(iter(NeighborLoader(data, [5, 5], batch_size=20,
                                     num_workers=2)))
    assert isinstance(batch.x, torch.Tensor)
    assert batch.x.shape == (batch.num_nodes, 32)
    assert torch.equal(batch.x, torch.from_numpy(
        np.asarray(data.x)[batch.n_id.numpy()]))


TREE = torch.tensor([[2, 3, 4, 5, 7, 7, 10, 11, 12, 13],
                     [0, 1, 2, 3, 2, 3, 7, 7, 7, 7]])


def test_homo_neighbor_loader_sampled_info():
    """Hop counts on a graph where the fan-outs leave no choice."""
    batch = next(iter(NeighborLoader(Data(edge_index=TREE, num_nodes=14),
                                     [1, 2, 4], batch_size=2)))
    assert batch.num_sampled_nodes == [2, 2, 3, 4]
    assert batch.num_sampled_edges == [2, 4, 4]


def test_hetero_neighbor_loader_sampled_info():
    data = HeteroData()
    data['paper'].num_nodes = data['author'].num_nodes = 14
    for s, d in [('paper', 'paper'), ('paper', 'author'),
                 ('author', 'paper')]:
        data[s, 'to', d].edge_index = TREE
    batch = next(iter(NeighborLoader(data, [1, 2, 4], batch_size=2,
                                     input_nodes='paper')))
    assert batch['paper'].num_sampled_nodes == [2, 2, 3, 4]
    assert batch['author'].num_sampled_nodes == [0, 2, 3, 4]
    assert batch['paper', 'to', 'paper'].num_sampled_edges == [2, 4, 4]
    assert batch['paper', 'to', 'author'].num_sampled_edges == [0, 4, 4]
    assert batch['author', 'to', 'paper'].num_sampled_edges == [2, 4, 4]


def test_neighbor_loader_mapping():
    edge_index = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 5],
                               [1, 2, 3, 4, 5, 8, 6, 7, 9, 10, 6, 11]])
    data = Data(edge_index=edge_index, num_nodes=12)
    for batch in NeighborLoader(data, [1], batch_size=2, shuffle=True):
        assert torch.equal(batch.n_id[batch.edge_index],
                           edge_index[:, batch.e_id])


def weighted_graph():
    return (torch.tensor([[1, 3, 0, 4], [2, 2, 1, 3]]),
            torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_weighted_homo_neighbor_loader():
    edge_index, weight = weighted_graph()
    data = Data(num_nodes=5, edge_index=edge_index, edge_weight=weight)
    loader = NeighborLoader(data, [1, 1], input_nodes=torch.tensor([2]),
                            batch_size=1, weight_attr='edge_weight')
    assert len(loader) == 1
    batch = next(iter(loader))
    assert batch.n_id.tolist() == [2, 3, 4]
    assert batch.n_id[batch.edge_index].tolist() == [[3, 4], [2, 3]]


def test_weighted_hetero_neighbor_loader():
    edge_index, weight = weighted_graph()
    data = HeteroData()
    data['paper'].num_nodes = 5
    data['paper', 'to', 'paper'].edge_index = edge_index
    data['paper', 'to', 'paper'].edge_weight = weight
    batch = next(iter(NeighborLoader(
        data, [1, 1], input_nodes=('paper', torch.tensor([2])),
        batch_size=1, weight_attr='edge_weight')))
    assert batch['paper'].n_id.tolist() == [2, 3, 4]
    ei = batch['paper'].n_id[batch['paper', 'paper'].edge_index]
    assert ei.tolist() == [[3, 4], [2, 3]]


CHAIN = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])


def test_edge_level_temporal_homo_neighbor_loader():
    data = Data(edge_index=CHAIN, edge_time=torch.arange(8), num_nodes=5)
    loader = NeighborLoader(data, [-1, -1], batch_size=1,
                            input_time=torch.full((5, ), 4),
                            time_attr='edge_time')
    total = 0
    for batch in loader:
        assert batch.edge_time.numel() == batch.num_edges
        assert (batch.edge_time <= 4).all()
        total += batch.num_edges
    # the edges of times 0..4 are reachable from some seed
    assert total > 0


def test_edge_level_temporal_hetero_neighbor_loader():
    data = HeteroData()
    data['A'].num_nodes = 5
    data['A', 'A'].edge_index = CHAIN
    data['A', 'A'].edge_time = torch.arange(8)
    loader = NeighborLoader(data, [-1, -1], input_nodes='A', batch_size=1,
                            input_time=torch.full((5, ), 4),
                            time_attr='edge_time')
    times = torch.cat([b['A', 'A'].edge_time for b in loader])
    assert times.numel() > 0 and (times <= 4).all()
    # the user's edge attribute is sliced, never rewritten
    assert set(times.tolist()) <= set(range(8))


def test_neighbor_loader_with_tensor_frame():
    torch_frame = pytest.importorskip('torch_frame')
    from torch_geometric.testing import get_random_tensor_frame
    g = torch.Generator().manual_seed(4)
    data = Data(tf=get_random_tensor_frame(num_rows=100),
                edge_index=random_edges(100, 100, 500, g),
                edge_attr=get_random_tensor_frame(500),
                global_tf=get_random_tensor_frame(num_rows=1))
    for batch in NeighborLoader(data, [5, 5], batch_size=20):
        assert isinstance(batch.tf, torch_frame.TensorFrame)
        assert batch.tf == data.tf[batch.n_id]
        assert batch.edge_attr == data.edge_attr[batch.e_id]
        assert batch.global_tf == data.global_tf


def test_neighbor_loader_input_id():
    """A boolean mask as ``input_nodes``: ``input_id`` holds the global
    ids of the seeds (PyG's ``mask.nonzero()``), not positions."""
    g = torch.Generator().manual_seed(5)
    data = HeteroData()
    data['a'].num_nodes, data['b'].num_nodes = 10, 12
    row = torch.randint(0, 10, (40, ), generator=g)
    col = torch.randint(0, 12, (40, ), generator=g)
    data['a', 'b'].edge_index = torch.stack([row, col])
    data['b', 'a'].edge_index = torch.stack([col, row])
    mask = torch.ones(10, dtype=torch.bool)
    mask[0] = False
    loader = NeighborLoader(data, [2, 2], input_nodes=('a', mask),
                            batch_size=2)
    got = [b['a'].input_id.tolist() for b in loader]
    assert got == [[1, 2], [3, 4], [5, 6], [7, 8], [9]]


def test_temporal_neighbor_loader_single_link():
    """Types without times ('a') are allowed; 'c' nodes are all later
    than their seeds and never sampled."""
    data = HeteroData()
    for nt in 'abc':
        data[nt].x = torch.arange(10)
    data['b'].time = torch.arange(0, 10)
    data['c'].time = torch.arange(1, 11)
    loop = torch.arange(10).repeat(2, 1)
    for s, d in [('a', 'b'), ('b', 'a'), ('a', 'c'), ('c', 'a')]:
        data[s, d].edge_index = loop
    batch = next(iter(NeighborLoader(data, [-1], input_nodes='a',
                                     time_attr='time', batch_size=10,
                                     input_time=torch.arange(10))))
    assert batch['a'].num_nodes == 10
    assert batch['b'].num_nodes == 10
    assert batch['c'].num_nodes == 0


# Beyond PyG's file: what users met with our earlier loaders.

def test_time_attr_never_overwrites_user_attributes():
    data = HeteroData()
    data['p'].x = torch.arange(6)
    data['p'].time = torch.tensor([5, 1, 2, 3, 4, 0])
    data['p', 'p'].edge_index = torch.tensor([[1, 2, 3, 4], [0, 0, 1, 2]])
    data['p', 'p'].edge_time = torch.tensor([1000, 1001, 1002, 1003])
    batch = next(iter(NeighborLoader(data, [-1, -1], input_nodes='p',
                                     time_attr='time', batch_size=3)))
    et = ('p', 'to', 'p')
    assert torch.equal(batch[et].edge_time, data[et].edge_time[
        batch[et].e_id])
    assert 'seed_time' not in batch['p']
    # given seed times: on the input type, one per seed
    batch = next(iter(NeighborLoader(data, [-1, -1], input_nodes='p',
                                     time_attr='time', batch_size=3,
                                     input_time=torch.arange(6) + 7)))
    assert batch['p'].seed_time.tolist() == [7, 8, 9]
    assert 'seed_time' not in batch[et]


def test_keyword_arguments_at_pyg_defaults_are_accepted():
    data = paper_author_graph()
    loader = NeighborLoader(
        data, [2], input_nodes=('paper', range(100)), batch_size=50,
        subgraph_type='directional', disjoint=False, replace=False,
        temporal_strategy='uniform', weight_attr=None, is_sorted=False,
        filter_per_worker=None, directed=True,
        neighbor_sampler=None, transform_sampler_output=None)
    assert len(list(loader)) == 2


def test_a_given_sampler_is_used():
    data = paper_author_graph()
    sampler = NeighborSampler(data, [-1])
    loader = NeighborLoader(data, [3], input_nodes='paper', batch_size=4,
                            neighbor_sampler=sampler)
    assert loader.node_sampler is sampler
    batch = next(iter(loader))
    et = ('author', 'to', 'paper')
    deg = torch.bincount(data[et].edge_index[1], minlength=100)
    assert batch[et].num_edges == int(deg[:4].sum())


@pytest.mark.parametrize('num_workers', [0, 2])
def test_seeded_runs_repeat(num_workers):
    data = paper_author_graph()

    def run(seed):
        loader = NeighborLoader(data, [3, 2], input_nodes='paper',
                                batch_size=16, shuffle=True,
                                num_workers=num_workers,
                                generator=torch.Generator().manual_seed(seed))
        return [b['author'].n_id for b in loader]
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize('make,error,match', [
    (lambda d: NeighborLoader(d, [2], input_nodes='nobody'), ValueError,
     "node type 'nobody'"),
    (lambda d: NeighborLoader(d, {('a', 'b', 'c'): [2]}, 'paper'),
     ValueError, 'edge types'),
    (lambda d: NeighborLoader(d, [2, -3], 'paper'), ValueError,
     "'num_neighbors'"),
    (lambda d: NeighborLoader(d, [2], ('paper', torch.tensor([0, 100]))),
     ValueError, 'out of range'),
    (lambda d: NeighborLoader(d, [2], ('paper', torch.ones(5).bool())),
     ValueError, 'mask of 5'),
    (lambda d: NeighborLoader(d, [2], ('paper', torch.zeros(2))), TypeError,
     'integer'),
    (lambda d: NeighborLoader(d, [2], 'paper', time_attr='when'),
     ValueError, "'time_attr' is 'when'"),
    (lambda d: NeighborLoader(d, [2], 'paper',
                              input_time=torch.zeros(100)), ValueError,
     'input_time'),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(paper_author_graph())
