"""Each module here owns the commands of one area and exposes `register(app)`."""

from . import data, features, ml, pipeline, serving, synth

REGISTRY = [synth.register, data.register, features.register, ml.register, serving.register, pipeline.register]
