"""tune-rec: search the loss-weight schedule and hyperparameters of a joint-loss recommender."""

__version__ = "0.1.0"
