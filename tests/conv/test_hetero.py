"""torch_geometric_hgt.HGTConv against PyG's own HGTConv: constructor,
forward, state_dict, initialisation, values and gradients."""
import pytest
import torch
from torch.nn.parameter import UninitializedParameter
from conftest import DEVICES
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv as PyGHGTConv
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_csc_tensor

from torch_geometric_hgt import HGTConv, LoopHGTConv
from torch_geometric_hgt.functional.dispatch import BACKENDS

BACKEND_NAMES = [b for b in BACKENDS if b != 'auto']


def two_type_graph(author_dim=16, paper_dim=16, seed=0):
    """PyG's test graph: 4 authors, 6 papers, up to 20 distinct 'writes'
    edges (a sparse adjacency would merge repeated ones) and their
    reverses."""
    g = torch.Generator().manual_seed(seed)
    x_dict = {'author': torch.randn(4, author_dim, generator=g),
              'paper': torch.randn(6, paper_dim, generator=g)}
    edge_index = coalesce(torch.stack([
        torch.randint(0, 4, (20, ), generator=g),
        torch.randint(0, 6, (20, ), generator=g)]))
    edge_index_dict = {('author', 'writes', 'paper'): edge_index,
                       ('paper', 'written_by', 'author'): edge_index.flip(0)}
    return x_dict, edge_index_dict


def as_adjacency(x_dict, edge_index_dict, kind):
    """The same edges as transposed sparse adjacencies ``[dst, src]``."""
    out = {}
    for (s, r, t), ei in edge_index_dict.items():
        size = (x_dict[s].size(0), x_dict[t].size(0))
        if kind == 'torch':
            out[(s, r, t)] = to_torch_csc_tensor(ei, size=size).t()
        else:
            out[(s, r, t)] = SparseTensor.from_edge_index(
                ei, sparse_sizes=size).t()
    return out


ADJ_KINDS = ['torch', pytest.param('torch_sparse', marks=pytest.mark.skipif(
    not WITH_TORCH_SPARSE, reason='needs torch_sparse'))]


@pytest.mark.parametrize('kind', ADJ_KINDS)
@pytest.mark.parametrize('in_channels,dims,out_channels', [
    (16, (16, 16), 16),                              # same dimensions
    ({'author': 16, 'paper': 32}, (16, 32), 32),     # per-type dimensions
    (-1, (16, 32), 32),                              # lazy
])
def test_pyg_cases(in_channels, dims, out_channels, kind):
    """PyG's own test cases: repr, output sizes, and the same result from
    edge indices and from sparse adjacencies."""
    x_dict, edge_index_dict = two_type_graph(*dims)
    metadata = (list(x_dict), list(edge_index_dict))
    conv = HGTConv(in_channels, out_channels, metadata, heads=2)
    assert str(conv) == f'HGTConv(-1, {out_channels}, heads=2)'
    out1 = conv(x_dict, edge_index_dict)
    assert {k: v.shape for k, v in out1.items()} == {
        'author': (4, out_channels), 'paper': (6, out_channels)}
    out2 = conv(x_dict, as_adjacency(x_dict, edge_index_dict, kind))
    assert out1.keys() == out2.keys()
    for key in out1:
        assert torch.allclose(out1[key], out2[key], atol=1e-6)


def test_inputs_not_modified():
    data = HeteroData()
    data['author'].x = torch.randn(4, 16)
    data['paper'].x = torch.randn(6, 32)
    data['author', 'paper'].edge_index = two_type_graph()[1][
        ('author', 'writes', 'paper')]
    data['paper', 'author'].edge_index = data['author', 'paper'] \
        .edge_index.flip(0)
    before = data.clone()
    conv = HGTConv(-1, 64, data.metadata(), heads=1)
    conv(data.x_dict, data.edge_index_dict)
    for store, old in zip(data.stores, before.stores):
        for key, value in store.items():
            assert torch.equal(value, old[key])


def test_no_output_for_types_without_in_edges():
    """As PyG: a node type that is no edge type's destination is absent."""
    data = HeteroData()
    data['author'].x = torch.randn(4, 16)
    data['paper'].x = torch.randn(6, 32)
    data['university'].x = torch.randn(10, 32)
    g = torch.Generator().manual_seed(1)
    for (s, t), (ns, nt, e) in {('author', 'paper'): (4, 6, 20),
                                ('paper', 'author'): (6, 4, 20),
                                ('university', 'author'): (10, 4, 10)
                                }.items():
        data[s, t].edge_index = torch.stack([
            torch.randint(0, ns, (e, ), generator=g),
            torch.randint(0, nt, (e, ), generator=g)])
    ours = HGTConv(-1, 64, data.metadata(), heads=1)
    pyg = PyGHGTConv(-1, 64, data.metadata(), heads=1)
    out = ours(data.x_dict, data.edge_index_dict)
    assert list(out) == list(pyg(data.x_dict, data.edge_index_dict))
    assert 'university' not in out
    assert out['author'].shape == (4, 64) and out['paper'].shape == (6, 64)


def awkward_graph(seed=0, device='cpu'):
    """``(x_dict, edge_index_dict, metadata)``: per-type input sizes (only
    'paper' and 'field' gate), a type that is nobody's destination
    ('institution'), one without nodes ('venue'), a metadata edge type
    missing from the call, one with zero edges, self-loops and repeated
    edges."""
    g = torch.Generator().manual_seed(seed)
    sizes = {'paper': (30, 32), 'author': (25, 16), 'institution': (5, 8),
             'field': (7, 32), 'venue': (0, 32)}
    x_dict = {t: torch.randn(n, c, generator=g) for t, (n, c) in
              sizes.items()}

    def edges(s, t, e):
        return torch.stack([torch.randint(0, max(sizes[s][0], 1), (e, ),
                                          generator=g),
                            torch.randint(0, max(sizes[t][0], 1), (e, ),
                                          generator=g)])
    cites = edges('paper', 'paper', 60)
    cites[1, :10] = cites[0, :10]                 # self-loops
    cites = torch.cat([cites, cites[:, :15]], 1)  # repeated edges
    edge_index_dict = {
        ('author', 'writes', 'paper'): edges('author', 'paper', 70),
        ('paper', 'rev_writes', 'author'): edges('paper', 'author', 70),
        ('paper', 'cites', 'paper'): cites,
        ('institution', 'employs', 'author'): edges('institution', 'author',
                                                    20),
        ('paper', 'has_topic', 'field'): edges('paper', 'field', 40),
        ('paper', 'in', 'venue'): edges('paper', 'venue', 0),
    }
    metadata = (list(sizes), list(edge_index_dict) +
                [('field', 'rev_has_topic', 'paper')])
    x_dict = {k: v.to(device) for k, v in x_dict.items()}
    edge_index_dict = {k: v.to(device) for k, v in edge_index_dict.items()}
    return x_dict, edge_index_dict, metadata


IN_CHANNELS = {'paper': 32, 'author': 16, 'institution': 8, 'field': 32,
               'venue': 32}


def randomized_pair(metadata, seed=0, in_channels=IN_CHANNELS, **kwargs):
    """PyG's layer, its priors and skip logits drawn away from their
    initial ones (a formula that ignored them would pass), and ours loaded
    from its state_dict with ``strict=True``."""
    torch.manual_seed(seed)
    pyg = PyGHGTConv(in_channels, 32, metadata, heads=4)
    with torch.no_grad():
        for name, p in pyg.named_parameters():
            if name.startswith(('p_rel.', 'skip.')):
                p.uniform_(-1.0, 2.0)
    ours = HGTConv(in_channels, 32, metadata, heads=4, **kwargs)
    ours.load_state_dict(pyg.state_dict(), strict=True)
    return pyg, ours


def outputs_and_grads(conv, x_dict, edge_index_dict, seed=3):
    x_dict = {k: v.clone().requires_grad_() for k, v in x_dict.items()}
    out = conv(x_dict, edge_index_dict)
    g = torch.Generator().manual_seed(seed)
    loss = sum((v * torch.randn(v.shape, generator=g).to(v.device)).sum()
               for v in out.values())
    loss.backward()
    grads = {f'x.{k}': v.grad for k, v in x_dict.items()}
    grads.update({n: p.grad for n, p in conv.named_parameters()})
    return out, grads


def assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] is None) == (b[key] is None), key
        if a[key] is not None:
            assert a[key].shape == b[key].shape, key
            assert torch.allclose(a[key].float(), b[key].float(),
                                  atol=atol), key


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('adjacency', [False, True])
@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_equals_pyg_values_and_gradients(backend, adjacency, device):
    x_dict, edge_index_dict, metadata = awkward_graph(device=device)
    pyg, ours = randomized_pair(metadata, backend=backend)
    pyg, ours = pyg.to(device), ours.to(device)
    if adjacency:
        edge_index_dict = as_adjacency(
            {k: v.cpu() for k, v in x_dict.items()},
            {k: v.cpu() for k, v in edge_index_dict.items()}, 'torch')
        edge_index_dict = {k: v.to(device) for k, v in
                           edge_index_dict.items()}
    out_p, grads_p = outputs_and_grads(pyg, x_dict, edge_index_dict)
    out_o, grads_o = outputs_and_grads(ours, x_dict, edge_index_dict)
    assert list(out_o) == list(out_p) == ['paper', 'author', 'field',
                                          'venue']
    assert_same(out_p, out_o, atol=1e-5)
    # None where PyG's is None: p_rel of the edge type missing from the
    # call, out_lin and skip of 'institution'
    assert_same(grads_p, grads_o, atol=1e-5)


def test_checkpoints_load_both_ways_strict():
    _, _, metadata = awkward_graph()
    pyg, ours = randomized_pair(metadata)
    assert list(ours.state_dict()) == list(pyg.state_dict())
    for key, value in pyg.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)
    back = PyGHGTConv(IN_CHANNELS, 32, metadata, heads=4)
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


@pytest.mark.parametrize('in_channels', [IN_CHANNELS, -1])
def test_same_initialisation_as_pyg(in_channels):
    """PyG's modules in PyG's order: from the same seed, the same weights
    (lazy ones at the first call)."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    convs = []
    del x_dict['venue'], edge_index_dict[('paper', 'in', 'venue')]
    for cls in (PyGHGTConv, HGTConv):
        torch.manual_seed(7)
        conv = cls(in_channels, 32, metadata, heads=4)
        conv(x_dict, edge_index_dict)
        convs.append(conv.state_dict())
    assert list(convs[0]) == list(convs[1])
    for key, value in convs[0].items():
        weight = convs[0].get(key.rsplit('.', 1)[0] + '.weight')
        if isinstance(weight, UninitializedParameter):  # 'venue', lazy
            assert isinstance(convs[1][key], type(value))
        else:
            assert torch.equal(value, convs[1][key]), key


def test_lazy_equals_pyg():
    x_dict, edge_index_dict, metadata = awkward_graph()
    del x_dict['venue'], edge_index_dict[('paper', 'in', 'venue')]
    pyg = PyGHGTConv(-1, 32, metadata, heads=4)
    pyg(x_dict, edge_index_dict)
    ours = HGTConv(-1, 32, metadata, heads=4)
    ours.load_state_dict(pyg.state_dict(), strict=True)
    assert_same(pyg(x_dict, edge_index_dict), ours(x_dict, edge_index_dict),
                atol=1e-5)


def test_lazy_survives_a_type_without_nodes():
    """PyG's lazy layer fails when a type has no nodes at its first call;
    ours initialises that type at the first call that has some."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    ours = HGTConv(-1, 32, metadata, heads=4)
    out = ours(x_dict, edge_index_dict)
    assert out['venue'].shape == (0, 32)
    x_dict['venue'] = torch.randn(3, 32)
    edge_index_dict[('paper', 'in', 'venue')] = torch.tensor([[0, 1],
                                                              [2, 2]])
    assert ours(x_dict, edge_index_dict)['venue'].shape == (3, 32)
    assert ours.kqv_lin.lins['venue'].weight.shape == (96, 32)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_close_to_pyg(dtype):
    x_dict, edge_index_dict, metadata = awkward_graph()
    pyg, ours = randomized_pair(metadata)
    with torch.autocast('cpu', dtype=dtype):
        out_p, grads_p = outputs_and_grads(pyg, x_dict, edge_index_dict)
        out_o, grads_o = outputs_and_grads(ours, x_dict, edge_index_dict)
    for key in out_p:
        assert out_o[key].dtype == out_p[key].dtype
        assert torch.isfinite(out_o[key]).all()
    scale = max(v.abs().max() for v in out_p.values() if v.numel())
    assert_same(out_p, out_o, atol=0.05 * float(scale))
    for key, g in grads_p.items():
        if g is not None and g.numel():
            assert torch.allclose(g.float(), grads_o[key].float(),
                                  atol=0.05 * float(g.abs().max()) + 1e-3)


@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_compile_equals_pyg(backend):
    torch._dynamo.reset()
    x_dict, edge_index_dict, metadata = awkward_graph()
    pyg, ours = randomized_pair(metadata, backend=backend)
    compiled = torch.compile(ours, fullgraph=True)
    out_p, grads_p = outputs_and_grads(pyg, x_dict, edge_index_dict)
    out_c, grads_c = outputs_and_grads(compiled, x_dict, edge_index_dict)
    assert_same(out_p, out_c, atol=1e-5)
    grads_c = {k.replace('_orig_mod.', ''): v for k, v in grads_c.items()}
    assert_same(grads_p, grads_c, atol=1e-5)


def homogeneous(conv, x_dict, edge_index_dict, **kwargs):
    """``LoopHGTConv`` (the reference) with ``conv``'s weights, on the
    homogeneous form of the graph: relation ``r`` = metadata edge type
    ``r``, node type ``i`` = metadata node type ``i``."""
    metadata = (conv.node_types, conv.edge_types)
    pyg = PyGHGTConv(conv.in_channels, conv.out_channels, metadata,
                     heads=conv.heads)
    pyg.load_state_dict({k: v for k, v in conv.state_dict().items()
                         if not k.startswith(('norms.', 'emb.'))})
    loop = LoopHGTConv.from_pyg(pyg)
    loop = LoopHGTConv(loop.in_dim, loop.out_dim, loop.num_node_types,
                       loop.num_relations, loop.n_heads, dropout=0.0,
                       **kwargs)
    state = LoopHGTConv.from_pyg(pyg).state_dict()
    for i, nt in enumerate(conv.node_types):
        if conv.norms is not None:
            state[f'norms.{i}.weight'] = conv.norms[nt].weight
            state[f'norms.{i}.bias'] = conv.norms[nt].bias
    if conv.emb is not None:
        state.update({f'emb.{k}': v for k, v in
                      conv.emb.state_dict().items()})
    loop.load_state_dict(state)
    xs, types, offset = [], [], {}
    for i, nt in enumerate(conv.node_types):
        offset[nt] = sum(x.size(0) for x in xs)
        xs.append(x_dict[nt])
        types.append(torch.full((x_dict[nt].size(0), ), i))
    src, dst, rel = [], [], []
    for et, ei in edge_index_dict.items():
        src.append(ei[0] + offset[et[0]])
        dst.append(ei[1] + offset[et[2]])
        rel.append(torch.full((ei.size(1), ), conv.edge_types_map[et]))
    return (loop.eval(), torch.cat(xs), torch.cat(types),
            torch.stack([torch.cat(src), torch.cat(dst)]), torch.cat(rel),
            offset)


def same_size_graph(seed=0):
    """Every type 16-d (one RTE size), so every type gates."""
    x_dict, edge_index_dict, metadata = awkward_graph(seed)
    g = torch.Generator().manual_seed(seed + 1)
    x_dict = {k: torch.randn(v.size(0), 16, generator=g)
              for k, v in x_dict.items()}
    return x_dict, edge_index_dict, metadata


@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_extras_equal_the_reference(backend):
    """use_norm, use_RTE and the attention weights, against LoopHGTConv on
    the homogeneous graph."""
    x_dict, edge_index_dict, metadata = same_size_graph()
    conv = HGTConv(16, 16, metadata, heads=2, use_norm=True, use_RTE=True,
                   max_len=12, backend=backend)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    times = {et: torch.randint(0, 12, (ei.size(1), ), generator=g)
             for et, ei in edge_index_dict.items()}
    assert {k.split('.')[0] for k in conv.state_dict()} >= {'norms', 'emb'}
    out, att = conv(x_dict, edge_index_dict, edge_time_dict=times,
                    return_attention_weights=True)
    loop, x, node_type, edge_index, edge_type, offset = homogeneous(
        conv, x_dict, edge_index_dict, use_norm=True, use_RTE=True,
        max_len=12)
    ref, ref_att = loop(x, node_type, edge_index, edge_type,
                        torch.cat(list(times.values())),
                        return_attention_weights=True)
    for nt, y in out.items():
        start = offset[nt]
        assert torch.allclose(y, ref[start:start + y.size(0)], atol=1e-5)
    assert list(att) == list(edge_index_dict)
    got = torch.cat([a for _, a in att.values()])
    assert got.shape == (edge_index.size(1), 2)
    assert torch.allclose(got, ref_att, atol=1e-6)
    for et, (ei, _) in att.items():
        assert torch.equal(ei, edge_index_dict[et])


def destinations_only(in_dim, seed=0):
    """The awkward graph without 'institution' (nobody's destination) and
    every type ``in_dim``-d: what the whole-layer route takes ('venue'
    without nodes, an edge type without edges and one missing from the
    call, self-loops, repeated edges, nodes without in-edges stay)."""
    x_dict, edge_index_dict, (node_types, edge_types) = awkward_graph(seed)
    g = torch.Generator().manual_seed(seed + 1)
    x_dict = {k: torch.randn(v.size(0), in_dim, generator=g)
              for k, v in x_dict.items() if k != 'institution'}
    edge_index_dict = {et: ei for et, ei in edge_index_dict.items()
                       if 'institution' not in et}
    metadata = ([nt for nt in node_types if nt != 'institution'],
                [et for et in edge_types if 'institution' not in et])
    return x_dict, edge_index_dict, metadata


@pytest.fixture
def layer_calls(monkeypatch):
    """How often HGTConv ran the whole-layer Function."""
    import torch_geometric_hgt.conv.hetero_routes as hetero
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return run_layer(*args, **kwargs)
    run_layer = hetero.run_layer
    monkeypatch.setattr(hetero, 'run_layer', spy)
    return calls


@pytest.mark.parametrize('in_dim', [32, 16])  # with and without the gate
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_layer_route_equals_pyg(in_dim, dtype, layer_calls):
    """On CPU 'ultrafast' runs the whole layer as one Function (as
    UltraFastHGTConv does): PyG's values and gradients, field by field,
    None where PyG's is None."""
    x_dict, edge_index_dict, metadata = destinations_only(in_dim)
    x_dict = {k: v.to(dtype) for k, v in x_dict.items()}
    pyg, ours = randomized_pair(metadata, in_channels=in_dim)
    pyg, ours = pyg.to(dtype), ours.to(dtype)
    out_p, grads_p = outputs_and_grads(pyg, x_dict, edge_index_dict)
    out_o, grads_o = outputs_and_grads(ours, x_dict, edge_index_dict)
    assert layer_calls == [1]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert_same(out_p, out_o, atol=tol)
    assert_same(grads_p, grads_o, atol=tol)


@pytest.mark.parametrize('use_norm', [False, True])
@pytest.mark.parametrize('train', [False, True])
def test_layer_route_equals_the_edge_route(use_norm, train, layer_calls):
    """The same seed draws the same dropout masks on both routes (a
    budget sends the call to the edge route); attention weights agree."""
    x_dict, edge_index_dict, metadata = destinations_only(32)
    runs = []
    for budget in (None, 2**40):
        torch.manual_seed(0)
        conv = HGTConv(32, 32, metadata, heads=4, use_norm=use_norm,
                       dropout=0.3, memory_budget=budget)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # priors, gates and norms away from 1, 0
            for p in conv.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        torch.manual_seed(1)
        out, grads = outputs_and_grads(conv.train(train), x_dict,
                                       edge_index_dict)
        torch.manual_seed(2)
        _, att = conv(x_dict, edge_index_dict, return_attention_weights=True)
        runs.append((out, grads, {et: a for et, (_, a) in att.items()}))
    assert layer_calls == [1, 1]
    for got, want in zip(*runs):
        assert_same(got, want, atol=1e-5)


def test_layer_route_conditions(layer_calls):
    """Mixed input sizes, a type that is nobody's destination, a budget,
    another backend, relative time or no pool: the edge route."""
    x_dict, edge_index_dict, metadata = destinations_only(32)
    for kwargs in ({'memory_budget': 2**40}, {'backend': 'vectorized'},
                   {'backend': 'memory_efficient'}):
        HGTConv(32, 32, metadata, heads=4, **kwargs)(x_dict,
                                                     edge_index_dict)
    rte = HGTConv(32, 32, metadata, heads=4, use_RTE=True)
    rte(x_dict, edge_index_dict, edge_time_dict={
        et: torch.zeros(ei.size(1), dtype=torch.long)
        for et, ei in edge_index_dict.items()})
    x_dict, edge_index_dict, metadata = awkward_graph()
    HGTConv(IN_CHANNELS, 32, metadata, heads=4)(x_dict, edge_index_dict)
    x_dict, edge_index_dict, metadata = same_size_graph()
    HGTConv(16, 32, metadata, heads=4)(x_dict, edge_index_dict)
    x_dict, edge_index_dict, metadata = destinations_only(32)
    conv = HGTConv(32, 32, metadata, heads=4)
    conv.pool = None  # the opt-out: nothing kept between calls
    conv.double().float()(x_dict, edge_index_dict)
    assert layer_calls == []


def test_layer_route_reuses_its_buffers():
    """From the second call on, the pool neither grows nor shrinks;
    moving the layer empties it."""
    x_dict, edge_index_dict, metadata = destinations_only(32)
    conv = HGTConv(32, 32, metadata, heads=4)
    conv.pool.min_bytes = 0  # keep even the tiny test buffers
    x_dict = {k: v.requires_grad_() for k, v in x_dict.items()}
    kept = []
    for _ in range(3):
        sum(v.sum() for v in conv(x_dict, edge_index_dict).values()) \
            .backward()
        kept.append(conv.pool.nbytes)
    assert kept[0] > 0 and kept == kept[:1] * 3
    conv.double()
    assert conv.pool.nbytes == 0


def test_dropout_only_in_training():
    x_dict, edge_index_dict, metadata = awkward_graph()
    pyg, _ = randomized_pair(metadata)
    ours = HGTConv(IN_CHANNELS, 32, metadata, heads=4, dropout=0.5)
    ours.load_state_dict(pyg.state_dict())
    assert_same(pyg(x_dict, edge_index_dict),
                ours.eval()(x_dict, edge_index_dict), atol=1e-5)
    ours.train()
    torch.manual_seed(0)
    a = ours(x_dict, edge_index_dict)['paper']
    torch.manual_seed(0)
    b = ours(x_dict, edge_index_dict)['paper']
    c = ours(x_dict, edge_index_dict)['paper']
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_backends_agree_in_training():
    """Dropout acts after the backend, so every backend draws the same
    masks from the same seed."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    outs = []
    for backend in BACKEND_NAMES:
        torch.manual_seed(0)
        conv = HGTConv(IN_CHANNELS, 32, metadata, heads=4, dropout=0.3,
                       backend=backend).train()
        outs.append(conv(x_dict, edge_index_dict))
    for out in outs[1:]:
        assert_same(outs[0], out, atol=1e-5)


def test_memory_budget_reaches_the_edge_phase():
    """``memory_budget`` is ``hgt_attention``'s: one that fits changes no
    number, one nothing fits is refused naming it."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    outs = []
    for budget in (None, 2**30):
        torch.manual_seed(0)
        conv = HGTConv(IN_CHANNELS, 32, metadata, heads=4,
                       memory_budget=budget)
        outs.append(conv(x_dict, edge_index_dict))
    assert_same(outs[0], outs[1], atol=0)
    conv.memory_budget = 1000
    with pytest.raises(ValueError, match="'memory_budget' \\(1000 bytes\\)"):
        conv(x_dict, edge_index_dict)


def test_empty_calls():
    x_dict, _, metadata = awkward_graph()
    conv = HGTConv(IN_CHANNELS, 32, metadata, heads=4)
    out = conv(x_dict, {})
    # no edges: the update of a zero aggregate, PyG's rule for such nodes
    bias = conv.out_lin.lins['paper'].bias
    beta = conv.skip['paper'].sigmoid()
    assert torch.allclose(out['paper'], beta * bias +
                          (1 - beta) * x_dict['paper'], atol=1e-6)
    assert conv({}, {}) == {}


@pytest.mark.parametrize('make,match', [
    (lambda: HGTConv(16, 30, (['a'], [('a', 'r', 'a')]), heads=4),
     "'out_channels' \\(got 30\\) must be divisible"),
    (lambda: HGTConv(16, 16, (['a'], [('a', 'r', 'b')])),
     "'metadata' edge type"),
    (lambda: HGTConv(16, 16, 'ab'), "'metadata' must be"),
    (lambda: HGTConv({'b': 16}, 16, (['a'], [('a', 'r', 'a')])),
     "'in_channels' must have one entry per node type"),
    (lambda: HGTConv(16, 16, (['a'], [('a', 'r', 'a')]), backend='fast'),
     "'backend' must be one of"),
    (lambda: HGTConv(16, 16, (['a'], [('a', 'r', 'a')]), memory_budget=0),
     "'memory_budget' must be"),
    (lambda: HGTConv(-1, 16, (['a'], [('a', 'r', 'a')]), use_RTE=True),
     "'use_RTE=True' needs one int 'in_channels'"),
])
def test_bad_construction(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_input():
    x_dict, edge_index_dict = two_type_graph(16, 32)
    metadata = (list(x_dict), list(edge_index_dict))
    conv = HGTConv({'author': 16, 'paper': 32}, 32, metadata, heads=2)
    et = ('author', 'writes', 'paper')
    with pytest.raises(ValueError, match="not in the metadata"):
        conv(x_dict, {('author', 'cites', 'paper'): edge_index_dict[et]})
    with pytest.raises(ValueError, match=r"x_dict\['author'\] has 8 "
                       r"features but in_channels\['author'\] is 16"):
        conv({**x_dict, 'author': torch.randn(4, 8)}, edge_index_dict)
    for row, what in ((0, 'author'), (1, 'paper')):
        bad = edge_index_dict[et].clone()
        bad[row, 3] = 6 if row else 4
        with pytest.raises(ValueError, match=f"out of range.*'{what}'"):
            conv(x_dict, {**edge_index_dict, et: bad})
    bad = edge_index_dict[et].clone()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="out of range"):
        conv(x_dict, {**edge_index_dict, et: bad})
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        conv(x_dict, {**edge_index_dict, et: edge_index_dict[et].t()})
    with pytest.raises(ValueError, match="has no 'author'"):
        conv({'paper': x_dict['paper']}, edge_index_dict)
    with pytest.raises(ValueError, match="use_RTE=False"):
        conv(x_dict, edge_index_dict, edge_time_dict={})
    rte = HGTConv(16, 16, (list(x_dict), list(edge_index_dict)),
                  use_RTE=True, max_len=5)
    x16 = {k: torch.randn(v.size(0), 16) for k, v in x_dict.items()}
    times = {k: torch.zeros(v.size(1), dtype=torch.long)
             for k, v in edge_index_dict.items()}
    with pytest.raises(ValueError, match="must hold the times"):
        rte(x16, edge_index_dict)
    times[et] = times[et] + 5
    with pytest.raises(ValueError, match=r"in \[0, max_len=5\)"):
        rte(x16, edge_index_dict, edge_time_dict=times)


def test_layer_route_copies_pickles_and_inference_mode():
    """A copied or unpickled layer starts with an empty pool and gives the
    same results; buffers made in inference mode do not leak into
    training."""
    import copy
    import pickle
    x_dict, edge_index_dict, metadata = destinations_only(32)
    conv = HGTConv(32, 32, metadata, heads=4)
    with torch.inference_mode():
        want = conv(x_dict, edge_index_dict)
    for other in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert other.pool.nbytes == 0
        with torch.no_grad():
            assert_same(want, other(x_dict, edge_index_dict), atol=0)
    x_dict = {k: v.clone().requires_grad_() for k, v in x_dict.items()}
    out = conv(x_dict, edge_index_dict)
    sum(v.sum() for v in out.values()).backward()
    assert_same(want, {k: v.detach() for k, v in out.items()}, atol=0)
    assert all(torch.isfinite(v.grad).all() for v in x_dict.values())
