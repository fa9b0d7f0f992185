"""Adam for the model's tables, stepped by torch's fused kernel, without ``torch.optim``.

Two optimisers share one state layout (a step count per table and Adam's two moments):

- :class:`Adam` moves every row at every step, as ``torch.optim.Adam`` does. Its parameters
  and state are bit-identical to ``torch.optim.Adam(fused=True)``.
- :class:`SparseAdam` moves only the rows that a batch touches and leaves the others, and their
  moments, as they are: the lazy Adam of ``torch.optim.SparseAdam``. A step costs time in
  proportion to the batch, not to the tables, which is what large catalogues need.

Both call ``torch._fused_adam_`` directly. Building a ``torch.optim`` optimiser imports
``torch._dynamo`` the first time, which takes 2.5 to 3.5 s on a 2-core machine: once in every
trial process. ``Optimizer.step`` also spends about as long in Python as the kernel spends on
MovieLens-100K's tables, once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class Adam:
    """Dense Adam over a fixed list of tensors; reads each tensor's ``.grad``.

    Args:
        params: The tensors to train.
        lr: Learning rate.
        betas: Decay rates of the first and second moments.
        eps: Term added to the denominator.
    """

    kind = "adam"

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        # Float step counts on each tensor's device, the layout that the fused kernel reads.
        self.steps = [torch.zeros((), device=param.device) for param in self.params]
        self.exp_avg = [torch.zeros_like(param) for param in self.params]
        self.exp_avg_sq = [torch.zeros_like(param) for param in self.params]

    @torch.no_grad()
    def step(self) -> None:
        """Take one step with the gradients in each tensor's ``.grad``."""
        self._fused_step(
            self.params, [param.grad for param in self.params], self.exp_avg, self.exp_avg_sq
        )

    def _fused_step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        exp_avg: list[torch.Tensor],
        exp_avg_sq: list[torch.Tensor],
    ) -> None:
        torch._foreach_add_(self.steps, 1)
        beta1, beta2 = self.betas
        torch._fused_adam_(
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            [],
            self.steps,
            amsgrad=False,
            lr=self.lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=self.eps,
            maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the state as tensors and numbers, loadable with ``weights_only=True``."""
        return {
            "kind": self.kind,
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "steps": [step.clone() for step in self.steps],
            "exp_avg": [moment.clone() for moment in self.exp_avg],
            "exp_avg_sq": [moment.clone() for moment in self.exp_avg_sq],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` of the same kind and tensor shapes.

        Raises:
            ValueError: the state is of another optimiser or other shapes.
        """
        if state.get("kind") != self.kind:
            raise ValueError(
                f"the saved optimiser state is {state.get('kind')!r}, not {self.kind!r}: "
                "resume with the optimizer that wrote it"
            )
        shapes = [tuple(moment.shape) for moment in state["exp_avg"]]
        expected = [tuple(param.shape) for param in self.params]
        if shapes != expected:
            raise ValueError(f"the saved optimiser state has shapes {shapes}, not {expected}")
        self.lr = float(state["lr"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.eps = float(state["eps"])
        for mine, saved in (
            (self.steps, state["steps"]),
            (self.exp_avg, state["exp_avg"]),
            (self.exp_avg_sq, state["exp_avg_sq"]),
        ):
            for tensor, value in zip(mine, saved, strict=True):
                tensor.copy_(value)


class SparseAdam(Adam):
    """Lazy Adam: each step moves only the rows that the batch touches.

    The rows of a step take Adam's update, with the step count of their table for the bias
    correction. Rows outside the batch keep their values and moments. This is the update of
    ``torch.optim.SparseAdam``, except that ``eps`` is added to the bias-corrected
    denominator, as in :class:`Adam`.
    """

    kind = "sparse_adam"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per table size: a mark per row and a row's position among the batch's rows.
        self._marks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @torch.no_grad()
    def step_rows(
        self, indices: Sequence[torch.Tensor], row_grads: Sequence[torch.Tensor]
    ) -> None:
        """Take one step from per-row gradients.

        Args:
            indices: For each tensor of ``params``, the rows that its gradients belong to,
                repeats allowed (their gradients add up). Passing the same index tensor for
                two tables finds its distinct rows once.
            row_grads: For each tensor, the gradients of the rows in ``indices``.
        """
        distinct: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rows, grads, gathered = [], [], []
        for param, index, grad in zip(self.params, indices, row_grads, strict=True):
            if id(index) not in distinct:
                distinct[id(index)] = self._distinct_rows(index, param.shape[0])
            unique, inverse = distinct[id(index)]
            summed = grad.new_zeros((unique.shape[0], *grad.shape[1:]))
            summed.index_add_(0, inverse, grad)
            rows.append(unique)
            grads.append(summed)
        tables = (*self.params, *self.exp_avg, *self.exp_avg_sq)
        gathered = [_take(table, unique) for table, unique in zip(tables, rows * 3, strict=True)]
        n = len(self.params)
        self._fused_step(gathered[:n], grads, gathered[n : 2 * n], gathered[2 * n :])
        for table, unique, updated in zip(tables, rows * 3, gathered, strict=True):
            _put(table, unique, updated)

    def _distinct_rows(
        self, index: torch.Tensor, n_rows: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the distinct rows of ``index`` in ascending order, and each entry's position
        among them."""
        if index.device.type != "cpu":
            # NOTE: the GPU branches of this class have not run on a GPU yet; the tests cover
            # the CPU only.
            return torch.unique(index, return_inverse=True)
        # A mark per row finds the distinct rows in one pass, about 3 times as fast as a sort
        # for a batch of a few thousand rows. It costs 9 bytes per table row.
        if n_rows not in self._marks:
            self._marks[n_rows] = (np.zeros(n_rows, dtype=bool), np.empty(n_rows, np.int64))
        marks, positions = self._marks[n_rows]
        entries = index.numpy()
        marks[entries] = True
        unique = np.flatnonzero(marks)
        marks[unique] = False
        positions[unique] = np.arange(unique.shape[0])
        return torch.from_numpy(unique), torch.from_numpy(positions[entries])


def _take(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return a copy of the ``rows`` of ``table``."""
    if table.device.type != "cpu":
        return table.index_select(0, rows)
    return torch.from_numpy(np.take(table.detach().numpy(), rows.numpy(), axis=0))


def _put(table: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``values`` into the ``rows`` of ``table``.

    On the CPU, NumPy's row assignment takes about a third of the time of torch's
    ``index_copy_`` for a few thousand rows of 64 floats (torch 2.13, one thread).
    """
    if table.device.type != "cpu":
        table.index_copy_(0, rows, values)
        return
    table.detach().numpy()[rows.numpy()] = values.numpy()


OPTIMIZERS: dict[str, type[Adam]] = {"adam": Adam, "sparse_adam": SparseAdam}
