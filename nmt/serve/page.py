"""The web page at `/`: a text box, the language pair, a button, the translation and its
timing. Inline HTML, CSS and JavaScript, no external assets. `/?q=TEXT` fills the box and
translates at once (`&pair=en-de` picks the pair): a link that shows a translation."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nmt-serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;
color:#222;background:#fafafa}
h1{font-size:1.4rem}textarea,#out{width:100%;box-sizing:border-box;min-height:8rem;
padding:.6rem;font-size:1rem;border:1px solid #bbb;border-radius:6px;background:#fff}
#out{display:block;white-space:pre-wrap;margin-top:.8rem}
.row{display:flex;gap:.6rem;align-items:center;margin:.6rem 0}
button{padding:.45rem 1.2rem;font-size:1rem;border-radius:6px;border:1px solid #357;
background:#468;color:#fff;cursor:pointer}select{font-size:1rem;padding:.3rem}
#timing{color:#666;font-size:.9rem}.error{color:#b00}
</style></head><body>
<h1>nmt-serve</h1>
<textarea id="q" placeholder="Text to translate"></textarea>
<div class="row"><select id="pair"></select><button id="go">Translate</button>
<span id="timing"></span></div>
<output id="out"></output>
<script>
const $ = (id) => document.getElementById(id);
async function translate() {
  const [source, target] = $("pair").value.split("-");
  $("out").className = ""; $("timing").textContent = "translating...";
  try {
    const r = await fetch("/v1/translate", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text: $("q").value, source, target})});
    const a = await r.json();
    if (!r.ok) throw new Error(a.error || r.statusText);
    $("out").textContent = a.translations;
    const t = a.timing;
    $("timing").textContent = `${t.total_ms.toFixed(1)} ms (queued ${t.queue_ms.toFixed(1)},` +
      ` translating ${t.translate_ms.toFixed(1)})`;
    document.body.dataset.done = "1";
  } catch (e) {
    $("out").className = "error"; $("out").textContent = e.message; $("timing").textContent = "";
    document.body.dataset.done = "1";
  }
}
async function init() {
  const langs = await (await fetch("/languages")).json();
  for (const l of langs) for (const t of l.targets) {
    const o = document.createElement("option");
    o.value = `${l.code}-${t}`; o.textContent = `${l.name} \\u2192 ${t}`;
    $("pair").append(o);
  }
  $("go").onclick = translate;
  const params = new URLSearchParams(location.search);
  if (params.get("pair")) $("pair").value = params.get("pair");
  if (params.get("q")) { $("q").value = params.get("q"); await translate(); }
}
init();
</script></body></html>
"""
