"""Data layer: 300VW reader/validator (``vw300``), ``.pts`` I/O (``pts``), Synth300VW (``synth``), the crop
protocol (``crops``), the first-frame detector (``detect``) and torch datasets of frames and frame pairs
(``pairs``). Submodules are imported on demand so ``import tdd_lite.data`` stays cheap.
"""
