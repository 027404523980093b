from .baseline import *
