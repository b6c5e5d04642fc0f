# Cython loops of distillation / KL, margin-softmax family, softplus and
# sampling; included into _core.pyx.
