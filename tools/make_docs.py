"""Turn microgpt.py into a side-by-side reading page: annotations on the left, the code they explain on the
right, block by block in the file's own order, with the section headings as a table of contents.

A block is a run of full-line comments (the annotation) and the code lines after it, up to the next
full-line comment or top-level def or class. A comment rule (a line of dashes or equals signs)
followed by a comment opens a section: that comment is the heading. The section after the `# ====`
rule (the tooling) is folded away in a <details> element. End-of-line comments stay with their code.
The page is one file with inline CSS, no script and no network.

Usage: python3 tools/make_docs.py [SOURCE] [OUTPUT]   (default: microgpt.py -> docs/microgpt.html)
"""
import html
import io
import os
import re
import sys
import tokenize

RULE = re.compile(r"^# ?([-=])\1{20,}\s*$")
TOP_LEVEL = re.compile(r"^(def|class|async def) |^@")


def comment_text(line):
    """'    # some words' -> 'some words'; '#' alone -> '' (a paragraph break)."""
    text = line.strip()[1:]
    return text[1:] if text.startswith(" ") else text


def is_comment(line):
    return line.strip().startswith("#") and not line.startswith("#!")


def parse(source):
    """Sections of the source: a list of dicts {title, folded, blocks}, each block a dict
    {note: list of comment texts, code: list of (line number, line)}. Line numbers count from 1."""
    lines = source.splitlines()
    sections = [{"title": "", "folded": False, "blocks": []}]
    note, code, i = [], [], 0

    def close_block():
        nonlocal note, code
        while code and not code[-1][1].strip():
            code.pop()                                  # trailing blank lines separate, they explain nothing
        if note or code:
            sections[-1]["blocks"].append({"note": note, "code": code})
        note, code = [], []

    while i < len(lines):
        line = lines[i]
        rule = RULE.match(line)
        if rule and i + 1 < len(lines) and is_comment(lines[i + 1]):
            close_block()
            sections.append({"title": comment_text(lines[i + 1]), "folded": rule.group(1) == "=",
                             "blocks": [], "rule": i + 1})
            i += 2
            while i < len(lines) and lines[i].strip() == "#":
                i += 1                                  # the empty comment between heading and paragraph
            continue
        if is_comment(line):
            if code:
                close_block()
            note.append(comment_text(line))
        elif TOP_LEVEL.match(line) and any(t.strip() for _, t in code) and not code[-1][1].startswith("@"):
            close_block()                               # a new function or class starts a new block
            code.append((i + 1, line))
        elif line.strip() or code:                      # blank lines before a block's code are dropped
            code.append((i + 1, line))
        i += 1
    close_block()
    return [s for s in sections if s["title"] or s["blocks"]]


def code_html(code):
    """The code lines, escaped, with end-of-line comments set apart."""
    text = "\n".join(line for _, line in code)
    comments = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text + "\n").readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        comments = {}                                   # a block that is not complete Python on its own
    out = []
    for row, (_, line) in enumerate(code, start=1):
        col = comments.get(row)
        if col is None:
            out.append(html.escape(line))
        else:
            out.append(html.escape(line[:col]) + '<span class="c">' + html.escape(line[col:]) + "</span>")
    return "\n".join(out)


def note_html(note):
    """Comment lines as paragraphs (an empty comment line separates them), `code` in backticks."""
    paragraphs, current = [], []
    for text in note + [""]:
        if text.strip():
            current.append(text.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    out = []
    for p in paragraphs:
        p = html.escape(p)
        p = re.sub(r"`([^`]+)`", r"<code>\1</code>", p)
        out.append(f"<p>{p}</p>")
    return "".join(out)


CSS = """
body { font: 15px/1.5 Georgia, 'Times New Roman', serif; color: #1d1d1d; background: #fbfaf7; margin: 0; }
header, nav, main { max-width: 1400px; margin: 0 auto; padding: 0 24px; }
header h1 { font-size: 28px; margin: 28px 0 4px; }
header p { margin: 4px 0; color: #555; }
nav { margin-top: 12px; }
nav ol { columns: 2; padding-left: 20px; margin: 8px 0 16px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 2px solid #333; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
td { vertical-align: top; padding: 6px 12px; border-top: 1px solid #e6e2d8; }
td.note { width: 38%; color: #333; }
td.note p { margin: 0 0 8px; }
td.code { width: 62%; background: #f3f1ea; }
pre { margin: 0; font: 12.5px/1.45 Menlo, Consolas, 'DejaVu Sans Mono', monospace; white-space: pre-wrap;
      word-break: break-word; }
code { font: 13px Menlo, Consolas, 'DejaVu Sans Mono', monospace; background: #efece3; padding: 0 2px; }
.c { color: #7a6a3a; }
.ln { color: #b0a98f; font-size: 11px; float: right; }
details > summary { cursor: pointer; font-size: 20px; font-weight: bold; margin: 36px 0 8px;
                    padding-top: 8px; border-top: 2px solid #333; }
@media print {
  body { background: white; font-size: 11px; }
  td.code { background: none; }
  pre { font-size: 9.5px; }
  tr { page-break-inside: avoid; }
  nav ol { columns: 3; }
}
"""


def render(source, title="microgpt.py"):
    """The page for `source`, as a string of HTML."""
    sections = parse(source)
    toc, body = [], []
    for n, section in enumerate(sections):
        anchor = f"s{n}"
        name = section["title"] or "Preamble"
        rows = []
        for block in section["blocks"]:
            first = block["code"][0][0] if block["code"] else ""
            rows.append(f'<tr id="L{first}"><td class="note">{note_html(block["note"])}</td>'
                        f'<td class="code"><span class="ln">{first}</span>'
                        f'<pre>{code_html(block["code"])}</pre></td></tr>')
        table = "<table>\n" + "\n".join(rows) + "\n</table>"
        if section["folded"]:
            body.append(f'<details id="{anchor}"><summary>{html.escape(name)}</summary>\n{table}\n</details>')
        else:
            body.append(f'<section id="{anchor}"><h2>{html.escape(name)}</h2>\n{table}\n</section>')
        toc.append(f'<li><a href="#{anchor}">{html.escape(name)}</a></li>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}: a reading page</title><style>{CSS}</style></head>
<body>
<header><h1>{html.escape(title)}</h1>
<p>Annotations on the left, the code they explain on the right, in the file's own order. The algorithm
ends with section 8, sampling; the tooling after it is folded away (click its heading to open it).</p>
<p>Generated from the source by tools/make_docs.py; every line of code appears once, in order.</p></header>
<nav><strong>Contents</strong><ol>{"".join(toc)}</ol></nav>
<main>
{chr(10).join(body)}
</main>
</body></html>
"""


def main(argv):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = argv[1] if len(argv) > 1 else os.path.join(here, "microgpt.py")
    output = argv[2] if len(argv) > 2 else os.path.join(here, "docs", "microgpt.html")
    with open(source, encoding="utf-8") as f:
        page = render(f.read(), os.path.basename(source))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(sys.argv)
