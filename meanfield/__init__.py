"""meanfield: self-attention as interacting particles on the sphere, in JAX."""

from . import plot as plot
from ._dynamics import MLP as MLP
from . import plot as plot
from ._dynamics import MeanField as MeanField
from ._energy import log_interaction as log_interaction
from ._integrate import (
    StopResult as StopResult,
)
from ._integrate import (
    Trajectory as Trajectory,
)
from ._integrate import (
    ensemble as ensemble,
)
from ._integrate import (
    integrate as integrate,
)
from ._integrate import (
    integrate_diffrax as integrate_diffrax,
)
from ._integrate import (
    integrate_until as integrate_until,
)
from ._integrate import (
    with_beta as with_beta,
)
from ._kernels import (
    attention_stats as attention_stats,
)
from ._kernels import (
    attention_stats_dense as attention_stats_dense,
)
from ._kernels import (
    attention_stats_tiled as attention_stats_tiled,
)
from ._perceptron import ACTIVATIONS as ACTIVATIONS
from ._perceptron import Perceptron as Perceptron
from ._sphere import (
    angles_to_circle as angles_to_circle,
)
from ._sphere import (
    circle_angles as circle_angles,
)
from ._sphere import (
    exp_map as exp_map,
)
from ._sphere import (
    geodesic as geodesic,
)
from ._sphere import (
    geodesic_distance as geodesic_distance,
)
from ._sphere import (
    log_map as log_map,
)
from ._sphere import (
    project as project,
)
from ._sphere import (
    retract as retract,
)
from ._sphere import (
    uniform_sphere as uniform_sphere,
)

__version__ = "0.1.0"
