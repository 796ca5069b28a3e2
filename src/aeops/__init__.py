"""aeops: autoencoder pipelines on Kedro, tracked and registered in MLflow.

This package's top level imports nothing heavy: the MLflow bundle ships the package
as code and loads only the parts that inference needs.
"""

__version__ = "0.1.0"
