"""calroute core: the domain package shared by every function (schema, features, training, model
store, registry, routing policy) and the adapters at its edge."""

__version__ = "0.1.0"
