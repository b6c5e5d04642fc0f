"""Loss functions (cross-entropy and friends) -- facade over csoftmax._core."""
__all__ = []
