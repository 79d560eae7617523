"""Turn microgpt.py into its reading page: the prose on the left, the code it explains on the right, block by
block in the file's own order.

The prose of a block is the run of full-line comments above its code and, for a function or class, its
docstring: the docstring leaves the code column and is set as prose, its formulas with simple typographic
symbols. A block starts at each comment run, each top-level function or class, and each method with a
docstring. A comment rule (a line of dashes or equals signs) followed by a comment opens a section; one
opened by a `# ====` rule is folded away. The code is highlighted with the standard library's tokenize.
Every section, class and function has a stable anchor (#sec-4, #cls-GPT, #fn-softmax,
#fn-Value.backward), and the page opens with the contents and the
README's concept map, whose entries link to them. The page also shows numbers measured as it is built:
the `--explain emma` table (section 5) and the size of one training step's graph (section 3).
One file, inline CSS, no script, no network.

Usage: python3 tools/make_docs.py [SOURCE] [OUTPUT]   (default: microgpt.py -> docs/microgpt.html)
"""
import ast
import html
import importlib.util
import io
import keyword
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tokenize

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULE = re.compile(r"^# ?([-=])\1{20,}\s*$")
DEF = re.compile(r"^\s*(@|def |class |async def )")


def comment_text(line):
    """'    # some words' -> 'some words'; '#' alone -> '' (a paragraph break)."""
    text = line.strip()[1:]
    return text[1:] if text.startswith(" ") else text


def is_comment(line):
    return line.strip().startswith("#") and not line.startswith("#!")


# ---- reading the source: definitions, docstrings, sections and blocks

def definitions(source):
    """{line number of a def or class: (kind, qualified name, docstring or None, docstring's line span)},
    kind "fn" or "cls"; and the module docstring as (text, span) or None."""
    tree = ast.parse(source)
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = child.body[0]
                doc = ast.get_docstring(child)
                span = (first.lineno, first.end_lineno) if doc is not None else None
                found[child.lineno] = ("cls" if isinstance(child, ast.ClassDef) else "fn", name, doc, span)
                visit(child, name + ".")

    visit(tree, "")
    doc = ast.get_docstring(tree)
    module = (doc, (tree.body[0].lineno, tree.body[0].end_lineno)) if doc is not None else None
    return found, module


class Reader:
    """Reads the source line by line into sections of blocks (parse())."""

    def __init__(self, source):
        self.lines = source.splitlines()
        self.defs, self.module = definitions(source)
        self.in_docstring = {n: span for _, _, doc, span in self.defs.values() if span
                             for n in range(span[0], span[1] + 1)}
        if self.module:
            self.in_docstring.update({n: self.module[1] for n in range(self.module[1][0], self.module[1][1] + 1)})
        self.sections = [{"title": "", "folded": False, "blocks": []}]
        self.block = {"note": [], "doc": None, "code": []}

    def close(self):
        """End the block being read: it joins the current section if it holds anything."""
        block = self.block
        while block["code"] and not block["code"][-1][1].strip():
            block["code"].pop()                     # trailing blank lines separate, they explain nothing
        if block["note"] or block["code"] or block["doc"]:
            self.sections[-1]["blocks"].append(block)
        self.block = {"note": [], "doc": None, "code": []}

    def heading(self, i):
        """If line i is a section's rule followed by its heading: open the section, return the next line's
        index; else None."""
        lines, rule = self.lines, RULE.match(self.lines[i])
        if not (rule and i + 1 < len(lines) and is_comment(lines[i + 1])):
            return None
        self.close()
        self.sections.append({"title": comment_text(lines[i + 1]), "folded": rule.group(1) == "=", "blocks": []})
        i += 2
        while i < len(lines) and lines[i].strip() == "#":
            i += 1                                  # the empty comment between heading and paragraph
        return i

    def line(self, n, line):
        """Line n (from 1), neither a heading nor in a docstring, into the block being read."""
        code = self.block["code"]
        if is_comment(line):
            if any(text.strip() for _, text in code):
                self.close()
            self.block["note"].append(comment_text(line))
        elif DEF.match(line) and not (code and code[-1][1].strip().startswith("@")):
            d = self.defs.get(n) or next((self.defs[m] for m in range(n + 1, n + 4) if m in self.defs), None)
            if not line.startswith(" ") or (d and d[2] is not None):     # top level, or documented
                if any(text.strip() for _, text in code):
                    self.close()
                if d and d[2] is not None:
                    self.block["doc"] = (d[1], d[2])
            self.block["code"].append((n, line))
        elif line.strip() or code:                  # blank lines before a block's code are dropped
            code.append((n, line))


def parse(source):
    """Sections of the source: a list of dicts {title, id, folded, blocks}. A block is a dict {note: comment
    texts, doc: (qualified name, docstring) or None, code: list of (line number, line)}. Line numbers count
    from 1."""
    reader, i = Reader(source), 0
    while i < len(reader.lines):
        after_heading = reader.heading(i)
        if after_heading is not None:
            i = after_heading
            continue
        span = reader.in_docstring.get(i + 1)
        if span:
            if reader.module and span == reader.module[1]:
                reader.block["doc"] = ("", reader.module[0])
            i = span[1]                             # the docstring is in the prose column, not the code's
            continue
        reader.line(i + 1, reader.lines[i])
        i += 1
    reader.close()
    numbered = [s for s in reader.sections if s["title"] or s["blocks"]]
    for s in numbered:
        m = re.match(r"(\d+)\. ", s["title"])
        s["id"] = f"sec-{m.group(1)}" if m else f"sec-folded-{len(numbered)}" if s["folded"] else "sec-preamble"
    return numbered


# ---- setting it: highlighting, prose and typography

def highlight_spans(source):
    """{line number: [(start column, end column, css class)]} of the tokens worth colouring."""
    spans, lines = {}, source.splitlines()

    def add(start, end, css):
        (r0, c0), (r1, c1) = start, end
        for r in range(r0, r1 + 1):
            lo = c0 if r == r0 else 0
            hi = c1 if r == r1 else len(lines[r - 1])
            spans.setdefault(r, []).append((lo, hi, css))

    previous, fstring = None, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = tokenize.tok_name[tok.type]
        if kind == "FSTRING_START":                 # Python 3.12+: an f-string comes in pieces
            fstring = tok.start
        elif kind == "FSTRING_END":
            add(fstring, tok.end, "s")
            fstring = None
        elif fstring:
            pass
        elif tok.type == tokenize.COMMENT:
            add(tok.start, tok.end, "c")
        elif tok.type == tokenize.STRING:
            add(tok.start, tok.end, "s")
        elif tok.type == tokenize.NUMBER:
            add(tok.start, tok.end, "n")
        elif tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string):
                add(tok.start, tok.end, "k")
            elif previous in ("def", "class"):
                add(tok.start, tok.end, "d")
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = tok.string
    return spans


def code_line(line, spans):
    out, at = [], 0
    for lo, hi, css in sorted(spans):
        if lo < at:
            continue
        out.append(html.escape(line[at:lo]))
        out.append(f'<span class="{css}">{html.escape(line[lo:hi])}</span>')
        at = hi
    out.append(html.escape(line[at:]))
    return "".join(out)


def typeset(text):
    """Escaped prose with `code` set in code and a docstring's formulas in simple typographic symbols:
    sum_i -> Σ_i, d/dx -> ∂/∂x, sqrt -> √, pi -> π, x_i -> x with subscript i, a^2 -> superscript,
    ' * ' -> ' · ', '->' -> '→'."""
    parts = re.split(r"`([^`]+)`", text)
    out = []
    for k, part in enumerate(parts):
        part = html.escape(part, quote=False)
        if k % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = re.sub(r"\bsum_(\w)\b", r"Σ_\1", part)
        part = re.sub(r"\bd/d(?=\w)", "∂/∂", part)                                 # d/dx
        part = re.sub(r"\bd([a-z]\w*)/d(?=[a-z])", r"∂\1/∂", part)                   # dy/dx
        part = re.sub(r"\bd (\w+)\s*/\s*d(?=\w)", r"∂ \1/∂", part)                   # d loss/dx
        part = re.sub(r"\b(mean|max|min)_(i|j|t)\b", r"\1<sub>\2</sub>", part)
        part = re.sub(r"\bsqrt\(", "√(", part)
        part = re.sub(r"\bpi\b", "π", part)
        part = re.sub(r"\^(\([^)]*\)|-?[0-9./]+|-?[a-z]\b)", r"<sup>\1</sup>", part)
        part = re.sub(r"(?<![\w.])([A-Za-zΣ])_(ij|i|j|t|n)\b", r"\1<sub>\2</sub>", part)
        part = part.replace(" * ", " · ").replace(" -&gt; ", " → ").replace(" &lt;= ", " ≤ ").replace(" &gt;= ", " ≥ ")
        out.append(part)
    return "".join(out)


def note_html(note):
    """Comment lines as paragraphs (an empty comment line separates them), typeset as the docstrings are."""
    paragraphs, current = [], []
    for text in note + [""]:
        if text.strip():
            current.append(text.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "".join(f"<p>{typeset(p)}</p>" for p in paragraphs)


def doc_html(name, doc):
    """A docstring as prose: paragraphs, indented tables kept as they are, formulas typeset."""
    label = f'<div class="doc-name">{html.escape(name)}</div>' if name else ""
    out, paragraph, table = [label], [], []

    def flush():
        if paragraph:
            out.append(f"<p>{typeset(' '.join(paragraph))}</p>")
            paragraph.clear()
        if table:
            out.append(f'<pre class="doc-table">{html.escape(chr(10).join(table))}</pre>')
            table.clear()

    for line in doc.splitlines() + [""]:
        tabular = line.startswith("  ") and re.search(r"\S  +\S", line.strip())
        if not line.strip():
            flush()
        elif tabular:
            if paragraph:
                flush()
            table.append(line)
        else:
            if table:
                flush()
            paragraph.append(line.strip())
    return f'<div class="doc">{"".join(out)}</div>'


# ---- what the page measures as it is built

def measure(microgpt):
    """The numbers the page shows, computed now: the `--explain emma` table of the default model (seed 42)
    and the size of one training step's graph, microgpt's and the classic engine's."""
    sys.path.insert(0, HERE)
    from reference import classic, graph_size
    docs = microgpt.load_docs(os.path.join(HERE, "names.txt"))
    rng = random.Random(42)
    rng.shuffle(docs)
    tokenizer = microgpt.Tokenizer.from_docs(docs)
    d = microgpt.DEFAULTS
    gpt = microgpt.GPT(tokenizer.vocab_size, d["n_embd"], d["n_head"], d["n_layer"], d["block_size"], rng)
    import inside
    x = inside.explain_document(gpt, tokenizer, microgpt.Adam(gpt.params), "emma", microgpt.DEFAULTS["lr"])
    name = lambda t: "BOS" if t == tokenizer.BOS else tokenizer.chars[t]
    rows = [(t, name(inp), name(target), p, loss, [(name(i), q) for i, q in top3])
            for t, (inp, target, p, loss, top3) in enumerate(x["positions"])]
    tokens = tokenizer.encode(docs[0])
    nodes, edges = graph_size(inside.mean_loss(gpt, tokens), gpt.params)
    model = classic.ClassicGPT.from_microgpt(gpt)
    classic_nodes, classic_edges = graph_size(classic.document_loss(model, tokens), model.params)
    return {"explain": rows, "vocab_size": tokenizer.vocab_size, "doc": docs[0], "graph": (nodes, edges),
            "classic": (classic_nodes, classic_edges), "picture": graph_picture()}


def graph_picture():
    """The SVG of a tiny model's graph (tools/graph.py), drawn now by Graphviz's dot; None without it."""
    if shutil.which("dot") is None:
        return None
    spec = importlib.util.spec_from_file_location("graph", os.path.join(HERE, "tools", "graph.py"))
    graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph)
    svg = subprocess.run(["dot", "-Tsvg"], input=graph.tiny_graph(), capture_output=True, text=True, check=True).stdout
    return svg[svg.index("<svg"):]                          # without the XML prologue: it sits inside the page


def explain_figure(facts):
    rows = "".join(f"<tr><td>{t}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{p:.4f}</td>"
                   f"<td>{loss:.4f}</td><td>{html.escape('  '.join(f'{c} {q:.2f}' for c, q in top3))}</td></tr>"
                   for t, a, b, p, loss, top3 in facts["explain"])
    mean = sum(r[4] for r in facts["explain"]) / len(facts["explain"])
    v = facts["vocab_size"]
    return (f'<figure class="measured" id="fig-explain"><figcaption>Computed as this page was built: '
            f'<code>python3 microgpt.py --explain emma</code>, the untrained default model.</figcaption>'
            f'<table><tr><th>pos</th><th>input</th><th>target</th><th>p(target)</th><th>loss (nats)</th>'
            f'<th>what it believed came next</th></tr>{rows}</table>'
            f'<p>mean loss <b>{mean:.4f}</b> over {len(facts["explain"])} positions; a uniform guess over {v} '
            f'tokens scores ln {v} = {math.log(v):.4f}.</p></figure>')


def graph_figure(facts):
    (n, e), (cn, ce) = facts["graph"], facts["classic"]
    return (f'<figure class="measured" id="fig-graph"><figcaption>Measured as this page was built: one training '
            f'step on <code>{html.escape(facts["doc"])}</code>, the default model.</figcaption>'
            f'<p>microgpt\'s graph: <b>{n:,}</b> nodes and <b>{e:,}</b> edges (child links). The classic engine '
            f'(<code>reference/classic.py</code>, every operation a node of two children): <b>{cn:,}</b> nodes '
            f'and <b>{ce:,}</b> edges, {cn / n:.0f} times the nodes. Parameters are not counted.</p></figure>')


def picture_figure(facts):
    caption = ('<figcaption>Drawn as this page was built (<code>make graph</code> draws it too): the graph of '
               'one position of a tiny GPT (tokens a, b and BOS; n_embd 4, one head, one layer), reading BOS '
               'and scored on "a", after <code>backward()</code>. Each box is a Value: the operation that made '
               'it, its value, its gradient; the blue boxes are the parameter matrices. Zoom in.</figcaption>')
    if facts["picture"] is None:
        return (f'<figure class="measured" id="fig-picture">{caption}<p>Graphviz is not installed where this page '
                f'was built, so the picture is missing: install it (<code>apt-get install graphviz</code>), then '
                f'<code>make docs</code> again.</p></figure>')
    return f'<figure class="measured" id="fig-picture">{caption}<div class="picture">{facts["picture"]}</div></figure>'



# ---- the page

def concept_rows(readme):
    """[(concept, [(label, target)])] from the README's table 'Where each idea is explained'; a target is
    a section number or a name of microgpt.py."""
    table = readme[readme.index("### Where each idea is explained"):]
    table = table[:table.index("\n## ")]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("concept", "---"):
            continue
        places = [(name, name) for name in re.findall(r"`([\w.]+)`", cells[1])]
        sections = re.findall(r"(\d+)\. \w+", cells[1])
        places = places or [(cells[1].split("›")[0].strip().rstrip(","), number) for number in sections[:1]]
        rows.append((cells[0], places))
    return rows


def anchor_of(target, defs):
    if target.isdigit():
        return f"sec-{target}"
    kind = next((k for k, name, _, _ in defs.values() if name == target), "fn")
    return f"{kind}-{target}"


CSS = """
:root { --code-bg: #f6f4ee; --rule: #e4dfd3; --ink: #1f1f1f; --soft: #5b5b5b; }
body { font: 16px/1.55 Georgia, 'Times New Roman', serif; color: var(--ink); background: #fcfbf8; margin: 0; }
header, nav, main { max-width: 1500px; margin: 0 auto; padding: 0 20px; }
header h1 { font-size: 30px; margin: 24px 0 4px; }
header p { margin: 4px 0; color: var(--soft); max-width: 62em; }
nav { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 2fr); gap: 24px; margin-top: 14px; }
nav h2 { font-size: 17px; margin: 4px 0; border: 0; padding: 0; }
nav ol { padding-left: 0; list-style: none; margin: 6px 0; }
nav li { margin: 2px 0; }
nav table { border-collapse: collapse; font-size: 14px; }
nav td { padding: 2px 8px 2px 0; vertical-align: top; border-bottom: 1px solid var(--rule); }
a { color: #1d4f91; }
a code { background: none; text-decoration: none; }
h2 { font-size: 21px; margin: 34px 0 10px; padding-top: 10px; border-top: 2px solid #333; }
.block { display: grid; grid-template-columns: minmax(0, 35fr) minmax(0, 65fr); border-top: 1px solid var(--rule); }
.note { padding: 8px 16px 8px 0; font-size: 15px; }
.note p { margin: 0 0 8px; }
.doc { border-left: 3px solid #c9bfa6; padding-left: 10px; margin: 0 0 8px; color: #2c2c2c; }
.doc-name { font: 12px Menlo, Consolas, 'DejaVu Sans Mono', monospace; color: var(--soft); margin-bottom: 2px; }
.doc p { margin: 0 0 6px; }
pre.doc-table { font: 12px/1.4 Menlo, Consolas, 'DejaVu Sans Mono', monospace; background: #f1eee6; padding: 4px 6px;
                white-space: pre-wrap; margin: 4px 0 8px; }
.code { background: var(--code-bg); padding: 8px 12px; min-width: 0; }
.code pre { margin: 0; font: 12.5px/1.5 Menlo, Consolas, 'DejaVu Sans Mono', monospace; white-space: pre-wrap;
            overflow-wrap: anywhere; }
@media (min-width: 1500px) { .code pre { font-size: 13px; } }
code { font: 0.85em Menlo, Consolas, 'DejaVu Sans Mono', monospace; background: #efece3; padding: 0 2px; }
sub, sup { font-size: 0.72em; line-height: 0; }
.k { color: #7a3e9d; } .s { color: #2e7d32; } .c { color: #8a6d3b; font-style: italic; } .n { color: #b4521e; }
.d { color: #1d4f91; font-weight: bold; }
.ln { color: #b0a98f; font-size: 11px; float: right; font-family: Menlo, Consolas, monospace; }
figure.measured { margin: 10px 0 14px; padding: 8px 12px; background: #eef3f8; border-left: 3px solid #1d4f91; }
figure.measured table { border-collapse: collapse; font: 13px Menlo, Consolas, 'DejaVu Sans Mono', monospace; }
figure.measured td, figure.measured th { padding: 1px 10px 1px 0; text-align: left; }
figcaption { font-size: 13px; color: var(--soft); margin-bottom: 4px; }
.picture { overflow-x: auto; background: white; }
.picture svg { height: auto; max-width: none; width: 2600px; }
details > summary { cursor: pointer; font-size: 21px; font-weight: bold; margin: 34px 0 10px; padding-top: 10px;
                    border-top: 2px solid #333; }
@media (max-width: 820px) {
  body { font-size: 15px; }
  nav { grid-template-columns: minmax(0, 1fr); }
  .block { grid-template-columns: minmax(0, 1fr); }
  .note { padding: 8px 0 4px; }
  .code { overflow-x: auto; }
  .code pre { font-size: 12px; white-space: pre; }      /* scroll sideways: wrapped code loses its indentation */
}
@media print {
  body { background: white; font-size: 10.5pt; }
  header, nav, main { max-width: none; padding: 0; }
  .block { grid-template-columns: minmax(0, 1fr); break-inside: avoid; }
  .note { padding: 4px 0; break-after: avoid; }
  .code { background: none; border-left: 2px solid #ddd; padding: 2px 8px; }
  .code pre { font-size: 7.5pt; }
  h2, summary { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  .print-note { display: block; }
}
.print-note { display: none; font-size: 12px; color: var(--soft); }
"""


def block_html(block, defs, spans):
    """One block: its prose and its code, side by side."""
    note = note_html(block["note"]) + (doc_html(*block["doc"]) if block["doc"] else "")
    lines = []
    for n, line in block["code"]:
        text = code_line(line, spans.get(n, []))
        if n in defs:
            kind, qualname = defs[n][0], defs[n][1]
            text = f'<span id="{kind}-{html.escape(qualname)}">{text}</span>'
        lines.append(text)
    first = next((n for n, _ in block["code"]), "")
    code = (f'<div class="code"><span class="ln">{first}</span><pre>{chr(10).join(lines)}</pre></div>'
            if block["code"] else '<div class="code"></div>')
    return f'<div class="block" id="L{first}"><div class="note">{note}</div>{code}</div>'


def section_html(section, defs, spans, facts):
    """One section of the page, with the measured figures where they belong."""
    name = section["title"] or "Preamble: what microgpt is and how to read it"
    blocks = [block_html(block, defs, spans) for block in section["blocks"]]
    if section["id"] == "sec-3":                        # after the engine: what it builds, measured and drawn
        blocks += [graph_figure(facts), picture_figure(facts)]
    if section["id"] == "sec-5":                        # before document_losses, whose docstring quotes it
        at = next(i for i, b in enumerate(section["blocks"])
                  if any(line.startswith("def document_losses") for _, line in b["code"]))
        blocks.insert(at, explain_figure(facts))
    inner = "\n".join(blocks)
    if section["folded"]:
        return (f'<details id="{section["id"]}"><summary>{html.escape(name)}</summary>\n'
                f'<p class="print-note">(Folded: open it before printing to print it.)</p>\n{inner}\n</details>')
    return f'<section id="{section["id"]}"><h2>{html.escape(name)}</h2>\n{inner}\n</section>'


def render(source, readme, facts, title="microgpt.py"):
    """The reading page for `source`, as a string of HTML, with the concept map of `readme` and the
    numbers of measure() in `facts`."""
    sections = parse(source)
    defs, _ = definitions(source)
    spans = highlight_spans(source)
    body = [section_html(section, defs, spans, facts) for section in sections]
    name = lambda section: section["title"] or "Preamble: what microgpt is and how to read it"
    toc = [f'<li><a href="#{section["id"]}">{html.escape(name(section))}</a></li>' for section in sections]
    link = lambda label, target: (f'<a href="#{anchor_of(target, defs)}">'
                                  + (f"<code>{html.escape(label)}</code>" if label == target else html.escape(label))
                                  + "</a>")
    concepts = "".join(f"<tr><td>{typeset(concept)}</td><td>{', '.join(link(*place) for place in places)}</td></tr>"
                       for concept, places in concept_rows(readme))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}: a reading page</title><style>{CSS}</style></head>
<body>
<header><h1>{html.escape(title)}</h1>
<p>The prose beside the code it explains (above it, on a narrow screen), in the file's own order: the comments
above each block, and each function's docstring, set as prose. The algorithm ends with section 8, sampling; section 9
assembles it into one run. The <a href="../workbench/__init__.py">workbench</a> (options, checkpoints, watching a
run, worker processes) serves the person running the model and is not on this page; its docstring describes the
interface through which it drives the model.</p>
<p>Generated from the source by tools/make_docs.py: every line of code appears once, in order.</p></header>
<nav><div><h2>Contents</h2><ol>{"".join(toc)}</ol></div>
<div><h2>Where each idea is explained</h2><table>{concepts}</table></div></nav>
<main>
{chr(10).join(body)}
</main>
</body></html>
"""


NEEDED = ("Value", "Tape", "GPT", "Adam", "Tokenizer", "document_losses", "train", "sample", "load_docs", "DEFAULTS")


def source_module(source):
    """The module of `source`, a microgpt.py (the project's or a copy), loaded as microgpt. Raises ValueError,
    with the line to say, if it is missing, not Python, or not microgpt.py (it lacks what the page measures)."""
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {source}: {getattr(e, 'strerror', None) or e}; give microgpt.py")
    except SyntaxError as e:
        raise ValueError(f"{source} is not Python (line {e.lineno}); give microgpt.py")
    defined = {getattr(node, "name", None) for node in tree.body} | {
        target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
        if isinstance(target, ast.Name)}
    missing = [name for name in NEEDED if name not in defined]
    if missing:
        raise ValueError(f"{source} is not microgpt.py: it defines no {', '.join(missing[:3])}; give microgpt.py")
    spec = importlib.util.spec_from_file_location("microgpt", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["microgpt"] = module
    spec.loader.exec_module(module)
    return module, text


def main(argv):
    source = argv[1] if len(argv) > 1 else os.path.join(HERE, "microgpt.py")
    output = argv[2] if len(argv) > 2 else os.path.join(HERE, "docs", "microgpt.html")
    try:
        microgpt, text = source_module(source)
        if os.path.isdir(output):
            raise ValueError(f"{output} is a folder; give the page's file name")
        if os.path.exists(output):
            with open(output, "rb") as f:
                if b"a reading page</title>" not in f.read(2048):
                    raise ValueError(f"{output} is there and is not a reading page this script wrote; remove it "
                                     f"or give another name")
    except ValueError as e:
        print(f"make_docs: error: {e}", file=sys.stderr)
        return 2
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as g:
        page = render(text, g.read(), measure(microgpt), os.path.basename(source))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
