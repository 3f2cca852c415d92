"""Translation backends other than PyTorch; each module offers a translator class with
`translate(lines, ...)` and a loader for `nmt.translate.BACKENDS`, which imports the module
(and so its engine) only to load a model. The recognisers look at files only and live in
`nmt.export.folder`."""
