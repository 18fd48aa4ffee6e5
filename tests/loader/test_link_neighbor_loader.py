"""LinkNeighborLoader as PyG's: one equivalent of each case of PyG's
``test/loader/test_link_neighbor_loader.py`` (2.8.0), on our sampler."""
import pytest
import torch
from conftest import DEVICES
from graphs import to_stores
from test_neighbor_loader import paper_author_graph, random_edges
from torch_geometric.data import Data, HeteroData

from torch_geometric_hgt.loader import LinkNeighborLoader


def pairs(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('subgraph_type', ['directional', 'bidirectional'])
@pytest.mark.parametrize('neg_sampling_ratio', [None, 1.0])
@pytest.mark.parametrize('filter_per_worker', [None, True, False])
def test_homo_link_neighbor_loader_basic(device, subgraph_type,
                                         neg_sampling_ratio,
                                         filter_per_worker):
    g = torch.Generator().manual_seed(0)
    pos = random_edges(50, 50, 500, g).to(device)
    neg = random_edges(50, 50, 500, g).to(device) + 50  # never edges
    label_index = torch.cat([pos, neg], 1)
    label = torch.cat([torch.ones(500), torch.zeros(500)]).to(device)
    data = Data(edge_index=pos, x=torch.arange(100, device=device),
                edge_attr=torch.arange(500, device=device))
    loader = LinkNeighborLoader(
        data, [-1, -1], batch_size=20, edge_label_index=label_index,
        edge_label=label if neg_sampling_ratio is None else None,
        subgraph_type=subgraph_type, neg_sampling_ratio=neg_sampling_ratio,
        shuffle=True, filter_per_worker=filter_per_worker)
    assert str(loader) == 'LinkNeighborLoader()' and len(loader) == 50
    first = loader([0])
    assert set(label_index[:, 0].tolist()) <= set(first.n_id.tolist())
    for batch in loader:
        assert batch.n_id.shape == (batch.num_nodes, )
        assert batch.e_id.shape == (batch.num_edges, )
        assert batch.x.device == data.x.device
        assert torch.equal(batch.x, data.x[batch.n_id])
        assert batch.input_id.numel() == 20
        assert batch.edge_attr.numel() == batch.num_edges
        if subgraph_type == 'directional':
            assert torch.equal(batch.edge_attr, data.edge_attr[batch.e_id])
        sampled = pairs(batch.edge_index.cpu())
        labels = batch.edge_label_index.cpu()
        if neg_sampling_ratio is None:
            assert labels.size(1) == 20
            # positives are edges of the batch, the given negatives never
            assert pairs(labels[:, batch.edge_label.cpu() == 1]) <= sampled
            assert not pairs(labels[:, batch.edge_label.cpu() == 0]) & \
                sampled
        else:
            assert labels.size(1) == 40
            assert batch.edge_label[:20].eq(1).all()
            assert batch.edge_label[20:].eq(0).all()
        # local label indices map back to the requested edges, in order
        given = batch.n_id.cpu()[labels[:, :20]]
        assert torch.equal(given, label_index.cpu()[:, batch.input_id.cpu()])


@pytest.mark.parametrize('subgraph_type', ['directional', 'bidirectional'])
@pytest.mark.parametrize('neg_sampling_ratio', [None, 1.0])
def test_hetero_link_neighbor_loader_basic(subgraph_type,
                                           neg_sampling_ratio):
    data = paper_author_graph()
    et = ('paper', 'to', 'author')
    loader = LinkNeighborLoader(data, [-1, -1], edge_label_index=et[::2],
                                batch_size=20, subgraph_type=subgraph_type,
                                neg_sampling_ratio=neg_sampling_ratio,
                                shuffle=True)
    assert str(loader) == 'LinkNeighborLoader()' and len(loader) == 50
    for batch in loader:
        assert batch.input_type == et
        labels = batch[et].edge_label_index
        if neg_sampling_ratio is None:
            assert pairs(labels) <= pairs(batch[et].edge_index)
            glob = torch.stack([batch['paper'].n_id[labels[0]],
                                batch['author'].n_id[labels[1]]])
            assert torch.equal(glob,
                               data[et].edge_index[:, batch[et].input_id])
        else:
            assert labels.size(1) == 40
            assert batch[et].edge_label[:20].eq(1).all()
            assert batch[et].edge_label[20:].eq(0).all()


@pytest.mark.parametrize('subgraph_type', ['directional', 'bidirectional'])
def test_hetero_link_neighbor_loader_loop(subgraph_type):
    data = paper_author_graph()
    et = ('paper', 'to', 'paper')
    for batch in LinkNeighborLoader(data, [-1, -1], batch_size=20,
                                    edge_label_index=('paper', 'paper'),
                                    subgraph_type=subgraph_type):
        assert torch.equal(batch['paper'].x, batch['paper'].n_id)
        assert pairs(batch[et].edge_label_index) <= \
            pairs(batch[et].edge_index)


def test_link_neighbor_loader_edge_label():
    g = torch.Generator().manual_seed(1)
    data = Data(edge_index=random_edges(100, 100, 500, g),
                x=torch.arange(100))
    for label, dtype in [(None, torch.float),
                         (torch.ones(500, dtype=torch.long), torch.long)]:
        for batch in LinkNeighborLoader(data, [-1, -1], batch_size=10,
                                        edge_label=label,
                                        neg_sampling_ratio=1.0):
            assert batch.edge_label.dtype == dtype
            assert batch.edge_label[:10].eq(1).all()
            assert batch.edge_label[10:].eq(0).all()


def test_temporal_homo_link_neighbor_loader():
    g = torch.Generator().manual_seed(2)
    data = Data(x=torch.randn(10, 5, generator=g),
                edge_index=torch.randint(0, 10, (2, 123), generator=g),
                time=torch.arange(10))
    label_time = torch.maximum(data.time[data.edge_index[0]],
                               data.time[data.edge_index[1]])
    loader = LinkNeighborLoader(data, [-1], time_attr='time',
                                edge_label=torch.ones(123),
                                edge_label_time=label_time, batch_size=1,
                                shuffle=True)
    for batch in loader:
        assert batch.edge_label_index.shape == (2, 1)
        assert batch.edge_label_time.shape == (1, )
        assert batch.edge_label.shape == (1, )
        assert (batch.time <= batch.edge_label_time).all()


def test_temporal_hetero_link_neighbor_loader():
    g = torch.Generator().manual_seed(3)
    data = paper_author_graph()
    data['paper'].time = torch.arange(100) - 200
    data['author'].time = torch.arange(200)
    with pytest.raises(ValueError, match="'edge_label_time' is not set"):
        LinkNeighborLoader(data, [-1, -1], batch_size=32,
                           edge_label_index=('paper', 'paper'),
                           time_attr='time')
    label_time = torch.randperm(500, generator=g)
    loader = LinkNeighborLoader(data, [-1, -1], batch_size=32,
                                edge_label_index=('paper', 'paper'),
                                edge_label_time=label_time,
                                time_attr='time', neg_sampling_ratio=0.5,
                                drop_last=True)
    et = ('paper', 'to', 'paper')
    for batch in loader:
        # every seed edge grows its own subgraph
        assert int(batch['paper'].batch.max()) + 1 == 32
        bound = batch[et].edge_label_time
        # nobody later than the latest seed (PyG folds the examples'
        # numbers modulo the positives, so 'batch' does not name each
        # node's own example here)
        assert batch['author'].time.max() <= bound.max()
        assert batch['author'].time.min() <= bound.min()


def test_custom_hetero_link_neighbor_loader():
    data = paper_author_graph()
    for store in data.edge_stores:
        del store.edge_attr
    kw = dict(num_neighbors=[-1, -1], batch_size=20,
              edge_label_index=('paper', 'to', 'author'))
    loader1 = LinkNeighborLoader(data, **kw)
    loader2 = LinkNeighborLoader(to_stores(data), **kw)
    assert str(loader1) == str(loader2)
    for b1, b2 in zip(loader1, loader2):
        for nt in data.node_types:
            assert torch.equal(b1[nt].x.sort().values,
                               b2[nt].x.sort().values)
        for et in data.edge_types:
            assert b1[et].edge_index.shape == b2[et].edge_index.shape


def test_homo_link_neighbor_loader_no_edges():
    g = torch.Generator().manual_seed(4)
    loader = LinkNeighborLoader(Data(num_nodes=100), num_neighbors=[],
                                batch_size=20,
                                edge_label_index=random_edges(100, 100, 100,
                                                              g))
    for batch in loader:
        assert batch.input_id.numel() == 20
        assert batch.edge_label_index.size(1) == 20
        assert batch.num_nodes == batch.edge_label_index.unique().numel()


def test_hetero_link_neighbor_loader_no_edges():
    g = torch.Generator().manual_seed(5)
    loader = LinkNeighborLoader(
        HeteroData(paper=dict(num_nodes=100)), num_neighbors=[],
        edge_label_index=(('paper', 'paper'),
                          random_edges(100, 100, 100, g)), batch_size=20)
    for batch in loader:
        store = batch['paper', 'paper']
        assert store.input_id.numel() == 20
        assert store.edge_label_index.size(1) == 20
        assert batch['paper'].num_nodes == \
            store.edge_label_index.unique().numel()


def check_triplets(batch, node, input_id, label_index, disjoint, temporal,
                   amount, batch_size=20):
    """PyG's triplet layout: ``src_index`` / ``dst_pos_index`` point at the
    requested edges' endpoints, ``dst_neg_index`` ``amount`` nodes per
    source; disjoint batches put the seeds first in that order, with
    ``batch`` numbering the examples."""
    assert torch.equal(node.x[node.src_index], label_index[0, input_id])
    assert torch.equal(node.x[node.dst_pos_index], label_index[1, input_id])
    shape = (batch_size, ) if amount == 1 else (batch_size, amount)
    assert node.dst_neg_index.shape == shape
    assert 0 <= node.dst_neg_index.min() and \
        node.dst_neg_index.max() < node.num_nodes
    if disjoint:
        assert node.src_index.tolist() == list(range(batch_size))
        assert node.dst_pos_index.tolist() == list(range(batch_size,
                                                         2 * batch_size))
        seeds = 2 * batch_size + batch_size * amount
        assert node.dst_neg_index.reshape(-1).sort().values.tolist() == \
            list(range(2 * batch_size, seeds))
        assert torch.equal(node.batch[:seeds],
                           torch.arange(batch_size).repeat(2 + amount))
    if temporal:
        assert (node.time <= node.seed_time[node.batch]).all()


@pytest.mark.parametrize('disjoint', [False, True])
@pytest.mark.parametrize('temporal', [False, True])
@pytest.mark.parametrize('amount', [1, 2])
def test_homo_link_neighbor_loader_triplet(disjoint, temporal, amount):
    if temporal and not disjoint:
        return  # temporal sampling is disjoint: the other case covers it
    g = torch.Generator().manual_seed(6)
    data = Data(x=torch.arange(100), edge_index=random_edges(100, 100, 400,
                                                             g),
                edge_attr=torch.arange(400))
    label_index = random_edges(100, 100, 500, g)
    kw = {}
    if temporal:
        data.time = torch.arange(100)
        kw = dict(time_attr='time', edge_label_time=torch.maximum(
            data.time[label_index[0]], data.time[label_index[1]]) + 50)
    loader = LinkNeighborLoader(
        data, [-1, -1], batch_size=20, edge_label_index=label_index,
        disjoint=disjoint, neg_sampling=dict(mode='triplet', amount=amount),
        shuffle=True, **kw)
    assert str(loader) == 'LinkNeighborLoader()' and len(loader) == 25
    for batch in loader:
        check_triplets(batch, batch, batch.input_id, label_index, disjoint,
                       temporal, amount)


@pytest.mark.parametrize('disjoint', [False, True])
@pytest.mark.parametrize('temporal', [False, True])
@pytest.mark.parametrize('amount', [1, 2])
def test_hetero_link_neighbor_loader_triplet(disjoint, temporal, amount):
    if temporal and not disjoint:
        return  # temporal sampling is disjoint: the other case covers it
    g = torch.Generator().manual_seed(7)
    data = paper_author_graph()
    label_index = random_edges(100, 100, 500, g)
    kw = {}
    if temporal:
        data['paper'].time = torch.arange(100)
        data['author'].time = torch.arange(200)
        kw = dict(time_attr='time', edge_label_time=torch.maximum(
            data['paper'].time[label_index[0]],
            data['paper'].time[label_index[1]]) + 50)
    weight = None if temporal else torch.rand(100, generator=g)
    loader = LinkNeighborLoader(
        data, [-1, -1], batch_size=20,
        edge_label_index=(('paper', 'paper'), label_index),
        disjoint=disjoint, shuffle=True,
        neg_sampling=dict(mode='triplet', amount=amount, src_weight=weight,
                          dst_weight=weight), **kw)
    assert len(loader) == 25
    for batch in loader:
        check_triplets(batch, batch['paper'],
                       batch['paper', 'paper'].input_id, label_index,
                       disjoint, temporal, amount)


def test_link_neighbor_loader_mapping():
    edge_index = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 5],
                               [1, 2, 3, 4, 5, 8, 6, 7, 9, 10, 6, 11]])
    data = Data(edge_index=edge_index, num_nodes=12)
    for batch in LinkNeighborLoader(data, [1], edge_label_index=edge_index,
                                    batch_size=2, shuffle=True):
        assert torch.equal(batch.n_id[batch.edge_index],
                           edge_index[:, batch.e_id])


@pytest.mark.parametrize('make,error,match', [
    (lambda d: LinkNeighborLoader(d, [2], edge_label_index=('a', 'b', 'c')),
     ValueError, "'edge_label_index'"),
    (lambda d: LinkNeighborLoader(
        d, [2], edge_label_index=(('paper', 'to', 'author'),
                                  torch.tensor([[0], [200]]))),
     ValueError, 'out of range'),
    (lambda d: LinkNeighborLoader(
        d, [2], edge_label_index=(('paper', 'to', 'author'),
                                  torch.zeros(3, 2, dtype=torch.long))),
     TypeError, r'\[2, N\]'),
    (lambda d: LinkNeighborLoader(d, [2]), ValueError,
     "'edge_label_index'"),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(paper_author_graph())
