"""The HGT model stack."""
import pytest
import torch
from conftest import (DEVICES, R, T, assert_training_step_repeats,
                      make_graph, randomize_)
from test_interop import hetero_data

from torch_geometric_hgt.conv import CONVS
from torch_geometric_hgt.models import HGT, DenseHGT, DifferentiableHGT


@pytest.mark.parametrize('name', sorted(CONVS))
def test_stack_equals_adapters_then_convs(name):
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    model = randomize_(HGT(8, 8, T, R, n_heads=2, n_layers=2,
                           conv=name)).eval()
    h = torch.stack([
        torch.tanh(model.adapt_ws[int(t)](x[n]))
        for n, t in enumerate(node_type)
    ])
    for conv in model.gcs:
        assert isinstance(conv, CONVS[name])
        h = conv(h, node_type, edge_index, edge_type)
    out = model(x, node_type, edge_index, edge_type)
    assert torch.allclose(out, h, atol=1e-5)


def test_forward_hetero_splits_per_type_and_allows_per_type_dims():
    data = hetero_data()
    data['venue'].x = data['venue'].x[:, :5]
    dims = [data[nt].x.size(1) for nt in data.node_types]
    model = HGT(dims, 8, len(data.node_types), len(data.edge_types),
                n_heads=2).eval()
    out = model.forward_hetero(data)
    homo = data.to_homogeneous(node_attrs=[], edge_attrs=[])
    flat = model([data[nt].x for nt in data.node_types], homo.node_type,
                 homo.edge_index, homo.edge_type)
    assert list(out) == data.node_types
    assert torch.equal(torch.cat(list(out.values())), flat)
    assert out['venue'].shape == (4, 8)


@pytest.mark.parametrize('case,match', [
    ('node types', "'data' has 4 node types and 5 edge types, the model 3"),
    ('edge types', "the model 4 and at most 4"),
    ('no x', "data\\['venue'\\] has no 'x'"),
    ('no edge_time', "has no 'edge_time' \\(the model has use_RTE=True\\)"),
])
def test_forward_hetero_names_what_data_lacks(case, match):
    data = hetero_data()
    T_, R_ = len(data.node_types), len(data.edge_types)
    kwargs = {}
    if case == 'node types':
        T_ -= 1
    if case == 'edge types':
        R_ -= 1
    if case == 'no x':
        del data['venue'].x
    if case == 'no edge_time':
        kwargs['use_RTE'] = True
        for et in data.edge_types[:-1]:
            data[et].edge_time = torch.zeros(data[et].num_edges,
                                             dtype=torch.long)
    model = HGT(16, 8, T_, R_, n_heads=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        model.forward_hetero(data)


def test_layer_norm_flags():
    model = HGT(8, 8, T, R, n_layers=3, prev_norm=True, last_norm=False)
    assert [c.use_norm for c in model.gcs] == [True, True, False]


def test_unknown_conv_name():
    with pytest.raises(ValueError, match="'conv' must be one of"):
        HGT(8, 8, T, R, conv='nope')


TYPE_COUNTS = [3, 2, 2, 3]  # per node type of the graphs below


def _typed_inputs(case):
    node_type = torch.repeat_interleave(torch.tensor(TYPE_COUNTS))
    x = [torch.randn(n, 8) for n in TYPE_COUNTS]
    if case == 'tensor type id out of range':
        node_type[-1] = T
    if case == 'too few tensors':
        x = x[:-1]
    if case == 'rows per type':
        x[0], x[1] = x[0][:2], torch.randn(3, 8)
    if case == 'unsorted':
        node_type = node_type.flip(0)
        x = x[::-1]
    if case == 'feature dim':
        x[2] = x[2][:, :5]
    if case.startswith('tensor'):
        x = torch.cat(x)
    if case == 'tensor rows':
        x = x[:-1]
    if case == 'tensor feature dim':
        x = x[:, :5]
    return x, node_type


@pytest.mark.parametrize('case,match', [
    ('tensor type id out of range', "'node_type' must hold node type ids"),
    ('too few tensors', "'x' must list one tensor per node type"),
    ('rows per type', "'x' lists \\[2, 3, 2, 3\\] rows per type"),
    ('unsorted', "'node_type' must hold them sorted by type"),
    ('feature dim', "'x\\[2\\]' must have size 8"),
    ('tensor rows', "'x'.*number of nodes"),
    ('tensor feature dim', "'x'.*in_dim"),
])
def test_bad_input_names_the_argument(case, match):
    # the per-type adapters read x and node_type before any convolution
    assert len(TYPE_COUNTS) == T
    model = HGT(8, 8, T, R, n_heads=2)
    x, node_type = _typed_inputs(case)
    edge_index = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=match):
        model(x, node_type, edge_index, torch.zeros(2, dtype=torch.long))


def _soft_dict(dtype):
    g = torch.Generator().manual_seed(0)
    return {'node_types': torch.softmax(torch.randn(2, 5, T, generator=g),
                                        -1).to(dtype),
            'adj_matrix': torch.rand(2, 5, 5, generator=g),
            'edge_types': torch.softmax(torch.randn(2, 5, 5, R, generator=g),
                                        -1)}


@pytest.mark.parametrize('cls', [DenseHGT, DifferentiableHGT])
def test_soft_stacks_take_probabilities_of_any_float_dtype(cls):
    # the projection reads the probabilities, cast like the layers cast them
    model = randomize_(cls(8, 8, 8, T, R, n_heads=2)).eval()
    want = model(_soft_dict(torch.float32))
    got = model(_soft_dict(torch.float64))
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('cls', [DenseHGT, DifferentiableHGT])
def test_soft_stacks_name_types_on_another_device(cls):
    graph = _soft_dict(torch.float32)
    graph['node_types'] = graph['node_types'].to('meta')
    with pytest.raises(ValueError, match="node_types.* is on meta"):
        cls(8, 8, 8, T, R, n_heads=2)(graph)


def _model_case(name):
    """A model and a function of one float input tensor to its output."""
    if name.startswith('HGT'):
        model = randomize_(HGT(8, 8, T, R, n_heads=2))
        x, node_type, edge_index, edge_type, _ = make_graph('random')
        if name == 'HGT':
            return model, lambda x: model(x, node_type, edge_index,
                                          edge_type), x
        # per-type tensors, nodes sorted by type
        node_type = node_type.sort().values
        sizes = torch.bincount(node_type, minlength=T).tolist()
        return model, lambda x: model(list(x.split(sizes)), node_type,
                                      edge_index, edge_type), x
    model = randomize_({'DenseHGT': DenseHGT,
                        'DifferentiableHGT': DifferentiableHGT}[name](
                            8, 8, 8, T, R, n_heads=2))
    graph = _soft_dict(torch.float32)
    return model, lambda P: model({**graph, 'node_types': P}), \
        graph['node_types']


@pytest.mark.slow
@pytest.mark.parametrize('name', ['HGT', 'HGT per-type x', 'DenseHGT',
                                  'DifferentiableHGT'])
def test_compile_equals_eager(name):
    torch._dynamo.reset()
    model, run, inp = _model_case(name)
    model.eval()
    inp.requires_grad_()
    compiled = torch.compile(run, fullgraph=True, dynamic=True)
    results = []
    for fn in (run, compiled):
        out = fn(inp)
        results.append([out, *torch.autograd.grad(out.sum(), inp)])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)


def _large_case(name, device):
    """A model in training mode on ``device`` and a function of one float
    input to its output, on inputs large enough (~3,000 nodes) that CPU
    kernels split their work between threads."""
    g = torch.Generator().manual_seed(0)
    if name == 'HGT':
        N, E = 3000, 12000
        node_type, edge_index, edge_type = (t.to(device) for t in (
            torch.randint(0, T, (N, ), generator=g),
            torch.randint(0, N, (2, E), generator=g),
            torch.randint(0, R, (E, ), generator=g)))
        model = HGT(16, 16, T, R, n_heads=2).to(device)
        return model.train(), lambda x: model(x, node_type, edge_index,
                                              edge_type), \
            torch.randn(N, 16, generator=g).to(device)
    B, N = 400, 8
    graph = {k: v.to(device) for k, v in {
        'node_types': torch.softmax(torch.randn(B, N, T, generator=g), -1),
        'adj_matrix': torch.rand(B, N, N, generator=g),
        'edge_types': torch.softmax(torch.randn(B, N, N, R, generator=g),
                                    -1)}.items()}
    model = {'DenseHGT': DenseHGT, 'DifferentiableHGT': DifferentiableHGT}[
        name](16, 16, 16, T, R, n_heads=2).to(device)
    return model.train(), lambda P: model({**graph, 'node_types': P}), \
        graph['node_types']


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', ['HGT', 'DenseHGT', 'DifferentiableHGT'])
def test_training_step_deterministic_given_seed(name, device):
    assert_training_step_repeats(lambda: _large_case(name, device), device,
                                 seed=5)
