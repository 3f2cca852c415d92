"""nmt: efficient neural machine translation (compact Transformers, distillation, int8 export)."""

__version__ = "0.1.0"
