"""The released student through Argos Translate (offline) and through nmt-translate, scored.

    python benchmarks/experiments/argos_release.py --data-dir ../shared/data

Packages `models/release/multi30k-en-de-student` (`nmt-export --format argos`), installs it
into a temporary Argos home and translates test_2016_flickr.en line by line with
`argostranslate` 1.11, every connection outside loopback refused (no download can happen);
translates the same file with `nmt-translate` (CTranslate2 backend) under Argos's decoding
settings (`nmt.export.argos.NMT_DECODING`: beam 4, length penalty 0.2, at most 256 tokens,
batches of 32 tokens, compute type auto, no vocabulary map). A third run, Argos's own
decoding function on each whole line (its sentence splitter bypassed), separates what the
splitter changes from what Argos's decoding does differently (it does not forbid `<s>` and
`<pad>`, which nmt does; it replaces `<unk>` from the source; its detokenizer turns `_` into
a space). Writes OUT (default benchmarks/results/argos/): scores.json and scores.md (BLEU
and chrF2 with sacrebleu signatures, settings, hardware, versions, time), the three outputs,
and differences.md (every line where Argos and nmt differ).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "release" / "multi30k-en-de-student"
TEST = "test_2016_flickr"
VERSIONS = ("nmt", "argostranslate", "ctranslate2", "sentencepiece", "minisbd", "sacrebleu")


def shown(path: str | Path) -> str:
    """`path` relative to the repository (for the report)."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def refuse_network() -> None:
    """Fail any connection or name lookup outside loopback, in this process."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by benchmarks/experiments/argos_release.py")

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith(
            ("127.", "::1", "localhost")
        ):
            refuse()
        return real_connect(self, address)

    socket.socket.connect = connect
    socket.getaddrinfo = refuse
    socket.create_connection = refuse


def argos_translate(package: Path, home: Path, lines: list[str]) -> dict:
    """Install `package` into an Argos home under `home` and translate `lines` one by one,
    with and without Argos's sentence splitter; also count the sentences it found."""
    for name, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
        os.environ[name] = str(home / sub)
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    os.environ["ARGOS_PACKAGES_DIR"] = str(home / "packages")
    from argostranslate import package as argos_package
    from argostranslate import settings
    from argostranslate import translate as argos

    argos_package.install_from_path(package)
    translation = argos.get_translation_from_codes("en", "de")
    start = time.perf_counter()
    outputs = [translation.translate(line) for line in lines]
    seconds = time.perf_counter() - start
    pkg_translation = translation.underlying  # CachedTranslation -> PackageTranslation
    splitter = pkg_translation.sentencizer
    sentences = [len(splitter.split_sentences(line)) for line in lines]

    class WholeLine:
        def split_sentences(self, text: str) -> list[str]:
            return [text]

    whole = [
        argos.apply_packaged_translation(
            pkg_translation.pkg, line, pkg_translation.translator, WholeLine(), 1
        )[0].value
        for line in lines
    ]
    cache = settings.data_dir / "minisbd"
    return {
        "outputs": outputs,
        "unsplit": whole,
        "sentences": sentences,
        "seconds": seconds,
        "sentencizer": type(splitter).__name__,
        "sbd_model": str(getattr(splitter, "lang", "")),
        "downloaded": sorted(p.name for p in cache.iterdir()) if cache.is_dir() else [],
        "settings": {
            "beam_size": settings.beam_size,
            "batch_size": settings.batch_size,
            "compute_type": settings.compute_type,
            "intra_threads": settings.intra_threads,
            "inter_threads": settings.inter_threads,
            "chunk_type": settings.chunk_type.name,
        },
    }


def nmt_translate(model: Path, src: Path, out: Path) -> tuple[list[str], float, list[str]]:
    """`nmt-translate` with Argos's decoding settings; its outputs, seconds and command."""
    from nmt.export.argos import ARGOS_DECODING, NMT_DECODING

    d = NMT_DECODING
    command = [
        sys.executable,
        "-m",
        "nmt",
        "translate",
        "-m",
        str(model),
        "-i",
        str(src),
        "-o",
        str(out),
        "--beam",
        str(d["beam_size"]),
        "--length-penalty",
        str(d["length_penalty"]),
        "--max-len-a",
        str(d["max_len_a"]),
        "--max-len-b",
        str(d["max_len_b"]),
        "--batch-tokens",
        str(d["max_batch_tokens"]),
        "--compute-type",
        ARGOS_DECODING["compute_type"],
        "--threads",
        "0",
        "--no-vmap",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    lines = out.read_text(encoding="utf-8").splitlines()
    shown_command = [shown(c) if Path(c).exists() else c for c in command[5:]]
    return lines, seconds, ["nmt-translate", *shown_command]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(MODEL), help="CTranslate2 export to package")
    p.add_argument("--data-dir", default=os.environ.get("NMT_DATA_DIR", "../shared/data"))
    p.add_argument("--output-dir", "-o", default=str(ROOT / "benchmarks" / "results" / "argos"))
    args = p.parse_args()

    from nmt.export import export
    from nmt.export.argos import ARGOS_DECODING, NMT_DECODING, read_package_info
    from nmt.machine import describe_cpu, hardware
    from nmt.scoring import score

    data = Path(args.data_dir).resolve() / "multi30k"
    src, ref = data / f"{TEST}.en", data / f"{TEST}.de"
    lines = src.read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    out_dir = Path(args.output_dir).resolve()
    model = Path(args.model).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="argos-release."))
    try:
        package = export(
            model, work / "multi30k-en-de.argosmodel", "argos", from_code="en", to_code="de"
        )
        info = read_package_info(package)
        nmt_out, nmt_seconds, command = nmt_translate(model, src, out_dir / "nmt.de")
        refuse_network()  # from here on: Argos, offline
        argos = argos_translate(package, work / "home", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    (out_dir / "argos.de").write_text("\n".join(argos["outputs"]) + "\n", encoding="utf-8")
    (out_dir / "argos-unsplit.de").write_text("\n".join(argos["unsplit"]) + "\n", encoding="utf-8")
    systems = {"argos": argos["outputs"], "nmt": nmt_out, "argos-unsplit": argos["unsplit"]}
    scores = {name: score(hyps, refs).as_dict() for name, hyps in systems.items()}
    split = [i for i, n in enumerate(argos["sentences"]) if n > 1]
    differ = [i for i in range(len(lines)) if argos["outputs"][i] != nmt_out[i]]
    differ_unsplit = [i for i in range(len(lines)) if argos["unsplit"][i] != nmt_out[i]]
    hw = hardware("cpu")
    result = {
        "test_set": {"src": shown(src), "ref": shown(ref), "sentences": len(lines)},
        "model": shown(model),
        "package": {k: info[k] for k in ("metadata", "sentence_splitter", "quantization")},
        "scores": scores,
        "agreement": {
            "lines_argos_split": len(split),
            "lines_argos_differs_from_nmt": len(differ),
            "of_which_split": len([i for i in differ if i in split]),
            "lines_argos_unsplit_differs_from_nmt": len(differ_unsplit),
        },
        "settings": {
            "argos": {**argos["settings"], "decoding": ARGOS_DECODING},
            "argos_sentencizer": argos["sentencizer"],
            "argos_sbd_model": Path(argos["sbd_model"]).name,
            "argos_downloads": argos["downloaded"],
            "nmt_translate": {**NMT_DECODING, "command": " ".join(command)},
            "network": "refused outside loopback while Argos ran",
        },
        "seconds": {"argos": round(argos["seconds"], 2), "nmt_translate": round(nmt_seconds, 2)},
        "hardware": hw,
        "versions": {name: _version(name) for name in VERSIONS},
    }
    (out_dir / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "scores.md").write_text(report(result, describe_cpu(hw)), encoding="utf-8")
    (out_dir / "differences.md").write_text(
        differences(lines, refs, argos, nmt_out, differ), encoding="utf-8"
    )
    print(report(result, describe_cpu(hw)))
    return 0


def report(r: dict, cpu: str) -> str:
    s, a = r["scores"], r["agreement"]
    bleu_sig, chrf_sig = s["argos"]["bleu_signature"], s["argos"]["chrf_signature"]
    rows = [
        f"| {label} | {s[name]['bleu']:.2f} | {s[name]['chrf']:.2f} |"
        for name, label in (
            ("argos", "Argos Translate 1.11, offline (sentence splitter on)"),
            ("nmt", "nmt-translate, CTranslate2 backend, Argos's decoding settings"),
            ("argos-unsplit", "Argos's decoding on whole lines (splitter bypassed)"),
        )
    ]
    argos = r["settings"]["argos"]
    return "\n".join(
        [
            "# The released student through Argos Translate and nmt-translate",
            "",
            f"`{r['model']}`, packaged by `nmt-export --format argos`; "
            f"{r['test_set']['sentences']} sentences of `{Path(r['test_set']['src']).name}`.",
            "",
            "| system | BLEU | chrF2 |",
            "|---|---|---|",
            *rows,
            "",
            f"BLEU `{bleu_sig}`; chrF `{chrf_sig}`.",
            "",
            f"- Argos split {a['lines_argos_split']} of the lines into several sentences; its "
            f"output differs from nmt-translate's on {a['lines_argos_differs_from_nmt']} lines, "
            f"{a['of_which_split']} of them split. On whole lines Argos's decoding differs on "
            f"{a['lines_argos_unsplit_differs_from_nmt']} lines (see differences.md).",
            f"- Argos: beam {argos['beam_size']}, length penalty "
            f"{argos['decoding']['length_penalty']}, batches of {argos['batch_size']} tokens, "
            f"compute type {argos['compute_type']}, intra_threads {argos['intra_threads']} "
            f"(CTranslate2's default), inter_threads {argos['inter_threads']}, splitter "
            f"{r['settings']['argos_sentencizer']} with the package's "
            f"`{r['settings']['argos_sbd_model']}`; downloads: "
            f"{r['settings']['argos_downloads'] or 'none'}; {r['settings']['network']}.",
            f"- nmt: `{r['settings']['nmt_translate']['command']}`.",
            f"- Time: Argos {r['seconds']['argos']} s (one line per call), nmt-translate "
            f"{r['seconds']['nmt_translate']} s (process start and model load included); "
            "one pass each on a machine that may be shared: orientation, not a speed "
            "benchmark (nmt-bench measures speed).",
            f"- Hardware: {cpu}, {r['hardware']['memory_gib']} GiB; "
            + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
            + ".",
            "",
        ]
    )


def differences(lines, refs, argos: dict, nmt_out: list[str], differ: list[int]) -> str:
    out = ["# Lines where Argos and nmt-translate differ", ""]
    for i in differ:
        out += [
            f"## line {i + 1} (Argos found {argos['sentences'][i]} sentence(s))",
            "",
            f"- source: {lines[i]}",
            f"- Argos: {argos['outputs'][i]}",
            f"- Argos, whole line: {argos['unsplit'][i]}",
            f"- nmt: {nmt_out[i]}",
            f"- reference: {refs[i]}",
            "",
        ]
    return "\n".join(out)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
