"""HGTLoader as PyG's: one equivalent of each case of PyG's
``test/loader/test_hgt_loader.py`` (2.8.0; the graph that PyG downloads,
Cora, replaced by KarateClub, which PyG ships), on our sampler; and the
link-level LinkHGTLoader."""
import pytest
import torch
from test_neighbor_loader import edges_exist, paper_author_graph
from torch_geometric.data import HeteroData
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import GraphConv, to_hetero
from torch_geometric.sampler import NegativeSampling
from torch_geometric.utils import k_hop_subgraph

from torch_geometric_hgt.loader import HGTLoader, LinkHGTLoader


def induced(full, src_ids, dst_ids):
    """Positions of the edges of ``full`` between the given nodes."""
    return (torch.isin(full[0], src_ids) &
            torch.isin(full[1], dst_ids)).nonzero().view(-1)


def test_hgt_loader():
    data = paper_author_graph()
    loader = HGTLoader(data, num_samples=[5] * 4, batch_size=20,
                       input_nodes='paper')
    assert str(loader) == 'HGTLoader()' and len(loader) == 5
    offset = {'paper': 0, 'author': 100}
    for batch in loader:
        assert set(batch.node_types) == {'paper', 'author'}
        assert set(batch.edge_types) == set(data.edge_types)
        # PyG's fields, nothing more: x, n_id, input_id, batch_size
        assert len(batch['paper']) == 4 and len(batch['author']) == 2
        assert batch['paper'].x.shape == (40, )  # 20 seeds + 4 hops of 5
        assert batch['author'].x.shape == (20, )
        assert batch['paper'].batch_size == 20
        assert batch['paper'].input_id.numel() == 20
        for nt, lo in offset.items():
            assert torch.equal(batch[nt].x, data[nt].x[batch[nt].n_id])
        for et in data.edge_types:
            store = batch[et]
            assert len(store) == 3  # edge_index, edge_attr, e_id
            want = induced(data[et].edge_index, batch[et[0]].n_id,
                           batch[et[2]].n_id)
            # the induced subgraph: every edge between sampled nodes
            assert sorted(store.e_id.tolist()) == want.tolist()
            assert torch.equal(store.edge_attr,
                               data[et].edge_attr[store.e_id])
            assert edges_exist(store.edge_index, data[et].edge_index,
                               batch[et[0]].x - offset[et[0]],
                               batch[et[2]].x - offset[et[2]])
        # sampled nodes are reached from the seeds: hardly any isolated
        n_id = {nt: batch[nt].n_id for nt in offset}
        touched = {nt: set() for nt in offset}
        for et in data.edge_types:
            ei = batch[et].edge_index
            touched[et[0]] |= set(n_id[et[0]][ei[0]].tolist())
            touched[et[2]] |= set(n_id[et[2]][ei[1]].tolist())
        assert sum(map(len, touched.values())) >= 59


def test_hgt_loader_on_karate():
    """Budgets larger than the graph: the batch is the two-hop
    neighbourhood, and a 2-layer GNN gives the full graph's outputs."""
    dataset = KarateClub()
    data = dataset[0]
    torch.manual_seed(0)
    data.edge_weight = torch.rand(data.num_edges)
    hetero = HeteroData()
    hetero['paper'].x = data.x
    hetero['paper'].n_id = torch.arange(data.num_nodes)
    hetero['paper', 'paper'].edge_index = data.edge_index
    hetero['paper', 'paper'].edge_weight = data.edge_weight
    seeds = torch.arange(5, 8)
    loader = HGTLoader(hetero, num_samples=[data.num_nodes] * 2,
                       batch_size=3, input_nodes=('paper', seeds))
    assert len(loader) == 1
    batch = next(iter(loader))
    n_id, _, _, mask = k_hop_subgraph(seeds, 2, data.edge_index,
                                      num_nodes=data.num_nodes)
    assert batch['paper'].n_id.sort().values.tolist() == \
        n_id.sort().values.tolist()
    assert batch['paper', 'paper'].num_edges == int(mask.sum())

    class GNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GraphConv(dataset.num_features, 16)
            self.conv2 = GraphConv(16, dataset.num_classes)

        def forward(self, x, edge_index, edge_weight):
            x = self.conv1(x, edge_index, edge_weight).relu()
            return self.conv2(x, edge_index, edge_weight).relu()

    model = GNN()
    hetero_model = to_hetero(model, hetero.metadata())
    full = model(data.x, data.edge_index, data.edge_weight)[seeds]
    out = hetero_model(batch.x_dict, batch.edge_index_dict,
                       batch.edge_weight_dict)['paper'][:3]
    torch.testing.assert_close(out, full, atol=1e-6, rtol=1e-5)


def test_hgt_loader_disconnected():
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data['paper'].x = torch.randn(10, 16, generator=g)
    data['author'].x = torch.randn(10, 16, generator=g)
    for nt in ['paper', 'author']:
        data[nt, nt].edge_index = torch.randint(0, 10, (2, 15), generator=g)
        data[nt, nt].edge_attr = torch.randn(15, 8, generator=g)
    for batch in HGTLoader(data, num_samples=[2], batch_size=2,
                           input_nodes='paper'):
        assert set(batch.node_types) == set(data.node_types)
        assert set(batch.edge_types) == set(data.edge_types)
        assert batch['author'].num_nodes == 0
        assert batch['author'].x.shape == (0, 16)
        assert batch['author', 'author'].edge_index.shape == (2, 0)
        assert batch['author', 'author'].edge_attr.shape == (0, 8)


@pytest.mark.parametrize('neg', [None, 'binary', 'triplet'])
def test_link_hgt_loader(neg):
    """Link-level HGSampling: batches of PyG's link layout whose positives
    are the requested edges of their type, negatives per PyG's
    ``NegativeSampling`` (binary: label 0; triplet: ``amount`` per
    source)."""
    data = paper_author_graph()
    et = ('paper', 'to', 'author')
    neg_sampling = None if neg is None else NegativeSampling(neg, 2)
    loader = LinkHGTLoader(data, [10, 10], edge_label_index=et,
                           neg_sampling=neg_sampling, batch_size=25,
                           shuffle=True)
    assert str(loader) == 'LinkHGTLoader()' and len(loader) == 40
    seen = []
    for batch in loader:
        store = batch[et]
        seen.append(store.input_id)
        want = data[et].edge_index[:, store.input_id]
        if neg == 'triplet':
            src = batch['paper'].n_id[batch['paper'].src_index]
            dst = batch['author'].n_id[batch['author'].dst_pos_index]
            assert torch.equal(torch.stack([src, dst]), want)
            assert batch['author'].dst_neg_index.shape == (25, 2)
            continue
        label_index = store.edge_label_index
        got = torch.stack([batch['paper'].n_id[label_index[0]],
                           batch['author'].n_id[label_index[1]]])
        assert torch.equal(got[:, :25], want)
        if neg == 'binary':
            assert label_index.size(1) == 75
            assert store.edge_label.tolist() == [1.0] * 25 + [0.0] * 50
        # the induced subgraph holds every edge between sampled nodes
        for t in data.edge_types:
            rows = induced(data[t].edge_index, batch[t[0]].n_id,
                           batch[t[2]].n_id)
            assert sorted(batch[t].e_id.tolist()) == rows.tolist()
    assert torch.cat(seen).sort().values.tolist() == list(range(1000))


@pytest.mark.parametrize('make,error,match', [
    (lambda d: HGTLoader(d, [2], input_nodes='nobody'), ValueError,
     "node type 'nobody'"),
    (lambda d: HGTLoader(d, [2], input_nodes=('paper', torch.tensor([100]))),
     ValueError, 'out of range'),
    (lambda d: HGTLoader(d, [2, -1], 'paper'), ValueError, '>= 0'),
    (lambda d: HGTLoader(d, [2], 'paper', input_time=torch.zeros(100)),
     ValueError, 'input_time'),
    (lambda d: LinkHGTLoader(d, [2], edge_label_index=('x', 'to', 'y')),
     ValueError, "'edge_label_index'"),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(paper_author_graph())
