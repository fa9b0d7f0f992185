import pytest
import torch

from tune_rec.model import JointLossModel, LossWeights


def _model_and_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = JointLossModel(7, 11, 4, global_mean=3.5, init_std=0.3, generator=generator)
    with torch.no_grad():
        model.user_bias.normal_(generator=generator)
        model.item_bias.normal_(generator=generator)
    users = torch.tensor([0, 1, 1, 6, 3, 0])
    items = torch.tensor([2, 5, 2, 10, 0, 2])
    negatives = torch.tensor([3, 3, 7, 1, 2, 9])
    ratings = torch.tensor([4.0, 2.0, 5.0, 1.0, 3.0, 4.0])
    return model, users, items, ratings, negatives


def _autograd_gradients(model, users, items, ratings, negatives, weights):
    losses = model.batch_losses(users, items, ratings, negatives)
    target = (
        weights.alpha * losses.embedding
        + weights.beta * losses.ranking
        + weights.l2 * losses.regularisation
    )
    model.zero_grad()
    target.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return grads, torch.stack((losses.embedding, losses.ranking, target)).detach()


@pytest.mark.parametrize(
    "weights",
    [LossWeights(1.0, 0.1, 0.05), LossWeights(0.0, 1.0, 0.0), LossWeights(2.5, 0.0, 0.3)],
)
def test_closed_form_gradient_matches_autograd(weights):
    model, users, items, ratings, negatives = _model_and_batch()
    expected, expected_losses = _autograd_gradients(
        model, users, items, ratings, negatives, weights
    )
    losses = model.accumulate_gradients(users, items, ratings, negatives, weights)
    for parameter, gradient in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses, expected_losses)


def test_gradient_replaced_not_added():
    model, users, items, ratings, negatives = _model_and_batch()
    weights = LossWeights(1.0, 0.1, 0.05)
    model.accumulate_gradients(users, items, ratings, negatives, weights)
    first = [p.grad.clone() for p in model.parameters()]
    model.accumulate_gradients(users, items, ratings, negatives, weights)
    for parameter, gradient in zip(model.parameters(), first, strict=True):
        torch.testing.assert_close(parameter.grad, gradient)


def test_score_is_biased_dot_product():
    model, *_ = _model_and_batch()
    users, items = torch.tensor([2]), torch.tensor([4])
    expected = (
        3.5
        + model.user_bias[2]
        + model.item_bias[4]
        + model.user_factors[2] @ model.item_factors[4]
    )
    torch.testing.assert_close(model.score(users, items)[0], expected)


def test_bpr_of_equal_scores_is_log2():
    model, users, items, ratings, _ = _model_and_batch()
    losses = model.batch_losses(users, items, ratings, items)
    assert losses.ranking.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_packed_sums_match_batch_losses():
    model, users, items, ratings, negatives = _model_and_batch()
    weights = LossWeights(1.0, 0.1, 0.05)
    losses = model.batch_losses(users, items, ratings, negatives)
    out = torch.empty(6)
    sums = model.accumulate_packed_gradients(
        users, torch.cat((items, negatives)), ratings - model.global_mean, weights, out=out
    )
    n = users.shape[0]
    assert sums.data_ptr() == out.data_ptr()
    torch.testing.assert_close(sums[0] / n, losses.embedding.detach())
    torch.testing.assert_close(sums[1] / n, losses.ranking.detach())
    torch.testing.assert_close(sums[2:].sum() / n, losses.regularisation.detach())


def test_packed_gradient_matches_unpacked():
    model, users, items, ratings, negatives = _model_and_batch()
    weights = LossWeights(0.7, 0.3, 0.02)
    model.accumulate_gradients(users, items, ratings, negatives, weights)
    expected = [p.grad.clone() for p in model.parameters()]
    model.accumulate_packed_gradients(
        users, torch.cat((items, negatives)), ratings - model.global_mean, weights
    )
    for parameter, gradient in zip(model.parameters(), expected, strict=True):
        assert torch.equal(parameter.grad, gradient)
