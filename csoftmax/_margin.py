"""Distillation, margin-softmax family, softplus / soft hinge, sampling."""
__all__ = []
