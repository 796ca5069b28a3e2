"""MLflow "models from code" entry point of the bundle.

MLflow runs this file when it loads the model, with the shipped ``aeops`` package on
``sys.path``, so the served model is rebuilt from code and JSON/``state_dict`` files:
nothing is unpickled.
"""

from mlflow.models import set_model

from aeops.serving._pyfunc import AutoencoderBundle

set_model(AutoencoderBundle())
