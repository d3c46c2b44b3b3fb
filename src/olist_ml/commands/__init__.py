"""Each module here owns the commands of one area and exposes `register(app)`."""

from . import data, features, ml, pipeline, serving

REGISTRY = [data.register, features.register, ml.register, serving.register, pipeline.register]
