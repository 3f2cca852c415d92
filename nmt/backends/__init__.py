"""Translation backends, one module each: `pytorch` (run folders, checkpoints, weights
folders, ensembles), `ct2` (CTranslate2 exports) and `onnx` (ONNX Runtime exports), over the
`Translator` protocol of `base` (`SearchTranslator`: the one implementation over
`nmt.search`, shared by PyTorch, ensembles and ONNX). `nmt.translate.BACKENDS` registers
them and imports a module (and so its engine) only to load a model; the recognisers look at
files only and live in `nmt.export.folder`."""
