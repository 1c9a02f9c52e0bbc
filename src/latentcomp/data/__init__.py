"""Data sets: toyfaces (procedural, with ground truth), image folders, MNIST IDX files."""


def __getattr__(name):  # lazy, so that importing one data set does not import the others
    if name == "ToyFaces":
        from .toyfaces import ToyFaces

        return ToyFaces
    if name == "ImageFolder":
        from .folder import ImageFolder

        return ImageFolder
    if name == "MNIST":
        from .mnist import MNIST

        return MNIST
    raise AttributeError(name)
