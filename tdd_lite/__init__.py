"""tdd_lite: the reference implementation of "Stabilized Temporal 3D Face Alignment Using Landmark
Displacement Learning" (Lee, Yoon, Park, Lee, Kang; Electronics 2023, 12, 3735).

Modules follow the paper: ``morphable`` (3DMM, eq. 2/7), ``camera`` (eq. 3/8), ``displacement`` (eq. 4-13),
``discriminators`` (Table 1), ``losses`` (eq. 1, 6, 11, 14-19), ``network`` (G), ``train``.
"""

__version__ = "0.1.0"
