"""Ray Tune adapters: the trainable, the tuner construction and the experiment recorder."""
