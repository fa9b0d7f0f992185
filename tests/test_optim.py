import pytest
import torch

from tune_rec.optim import Adam, SparseAdam


def _tables(seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(7, 3, generator=generator), torch.randn(7, generator=generator)]


def _gradients(generator):
    return [torch.randn(7, 3, generator=generator), torch.randn(7, generator=generator)]


def test_adam_bit_identical_to_torch_fused_adam():
    ours = _tables(0)
    theirs = [torch.nn.Parameter(table.clone()) for table in ours]
    optimizer = Adam(ours, lr=0.05)
    reference = torch.optim.Adam(theirs, lr=0.05, fused=True)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        gradients = _gradients(generator)
        for table, parameter, gradient in zip(ours, theirs, gradients, strict=True):
            table.grad = gradient.clone()
            parameter.grad = gradient.clone()
        optimizer.step()
        reference.step()
    for index, (table, parameter) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.equal(table, parameter.detach())
        state = reference.state[parameter]
        assert torch.equal(optimizer.exp_avg[index], state["exp_avg"])
        assert torch.equal(optimizer.exp_avg_sq[index], state["exp_avg_sq"])
        assert optimizer.steps[index].item() == state["step"].item() == 4


def test_sparse_adam_over_every_row_is_adam():
    dense_tables, sparse_tables = _tables(0), _tables(0)
    dense = Adam(dense_tables, lr=0.05)
    sparse = SparseAdam(sparse_tables, lr=0.05)
    rows = torch.arange(7)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        gradients = _gradients(generator)
        for table, gradient in zip(dense_tables, gradients, strict=True):
            table.grad = gradient
        dense.step()
        sparse.step_rows([rows, rows], gradients)
    for dense_table, sparse_table in zip(dense_tables, sparse_tables, strict=True):
        assert torch.equal(dense_table, sparse_table)


def test_sparse_adam_adds_repeated_rows():
    repeated_tables, summed_tables = _tables(0), _tables(0)
    repeated = SparseAdam(repeated_tables, lr=0.1)
    summed = SparseAdam(summed_tables, lr=0.1)
    first, second = torch.ones(1, 3), torch.full((1, 3), 2.0)
    rows = torch.tensor([4, 4])
    repeated.step_rows([rows, rows], [torch.cat((first, second)), torch.tensor([1.0, 2.0])])
    summed.step_rows([torch.tensor([4]), torch.tensor([4])], [first + second, torch.tensor([3.0])])
    for a, b in zip(repeated_tables, summed_tables, strict=True):
        assert torch.equal(a, b)


def test_sparse_adam_moves_only_batch_rows():
    tables = _tables(0)
    before = [table.clone() for table in tables]
    optimizer = SparseAdam(tables, lr=0.1)
    rows = torch.tensor([1, 5])
    optimizer.step_rows([rows, rows], [torch.ones(2, 3), torch.ones(2)])
    for table, old in zip(tables, before, strict=True):
        moved = (table != old).reshape(7, -1).any(dim=1).nonzero().squeeze(1).tolist()
        assert moved == [1, 5]
    assert optimizer.exp_avg_sq[0][0].abs().sum() == 0
    assert optimizer.steps[0].item() == 1


@pytest.mark.parametrize("kind", [Adam, SparseAdam])
def test_state_round_trip(kind, tmp_path):
    tables = _tables(0)
    optimizer = kind(tables, lr=0.05)
    rows = torch.arange(7)
    gradients = _gradients(torch.Generator().manual_seed(1))
    for table, gradient in zip(tables, gradients, strict=True):
        table.grad = gradient
    if kind is SparseAdam:
        optimizer.step_rows([rows, rows], gradients)
    else:
        optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "state.pt")
    restored = kind(_tables(2), lr=1.0)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.lr == 0.05
    for mine, theirs in zip(restored.exp_avg_sq, optimizer.exp_avg_sq, strict=True):
        assert torch.equal(mine, theirs)
    assert restored.steps[0].item() == 1


def test_state_of_other_shapes_rejected():
    state = Adam(_tables(0), lr=0.05).state_dict()
    with pytest.raises(ValueError, match="shapes"):
        Adam([torch.zeros(8, 3), torch.zeros(8)], lr=0.05).load_state_dict(state)
