"""The checks of each notebook's exercises, one module per notebook (``nbNN``).

Each module registers its checks with ``labkit.lab.exercises.exercise("NN.name")``;
``exercises.check`` imports the module on first use.
"""
