"""Translation backends other than PyTorch; each module offers a translator class with
`translate(lines, ...)`, a loader and a recogniser for `nmt.translate.BACKENDS`."""
