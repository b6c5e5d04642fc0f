# Cython loops of the loss functions; included into _core.pyx so they share
# its kernel table, thread settings and block helpers.
